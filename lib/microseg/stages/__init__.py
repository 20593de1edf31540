"""The stage bodies, grouped by domain; ``microseg.pipeline`` names them in its registry."""
