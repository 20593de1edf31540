"""Fault-injection harness: stages SIGKILLed during their writes and re-run, concurrent
ingests into the same tables; see ``python -m reliability --help``."""
