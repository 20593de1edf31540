"""Reproduce a recorded run from its MLflow record alone.

A run that called ``tracking.log_run_context`` holds its resolved config (``config.json``)
and the Delta version of every table it read (``table_versions.json``). The config
returned here is that config with ``tables.pinned`` set to those versions, so every stage
run with it reads the tables as the recorded run did (Delta time travel), whatever has been
written since. Same code (the run's ``code_version`` tag), config, seed and table versions
give the same model and, on CPU, the same embeddings and segments.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow

from microseg.config import Settings


def table_key(cfg: Settings, name: str) -> str:
    """The ``tables.names`` key of a table name; ``gold.segments_traits`` -> ``segments@traits``."""
    for key, base in cfg.tables.names.items():
        if name == base:
            return key
    for key, base in cfg.tables.names.items():
        if name.startswith(base + "_"):
            return f"{key}@{name[len(base) + 1:]}"
    raise KeyError(f"table {name!r} is not in tables.names")


def config_from_run(run_id: str, tracking_uri: str) -> Settings:
    """The run's config with its input tables pinned to the versions it read."""
    with tempfile.TemporaryDirectory() as tmp:
        record = {name: json.loads(Path(mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=name, dst_path=tmp, tracking_uri=tracking_uri)).read_text())
            for name in ("config.json", "table_versions.json")}
    cfg = Settings.model_validate(record["config.json"])
    pinned = {table_key(cfg, name): int(v) for name, v in record["table_versions.json"].items()}
    return cfg.with_overrides(**{"tables.pinned": pinned})
