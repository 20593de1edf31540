"""microseg: micro-segments of bank customers from the spending personality of their transactions."""

__version__ = "0.1.0"
