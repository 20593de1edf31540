"""The harness's lakehouse: one folder, its snapshots, and a Spark session reading it.

Snapshots are restored in place (same path) because the MLflow database inside the
lakehouse records artifact locations as absolute paths under it: a restored folder is
then exactly the lakehouse as it was, registered model and all.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pyspark.sql import SparkSession

from microseg.config import load_config
from microseg.spark import get_spark
from microseg.tables import Tables
from reliability.fingerprint import Fingerprint, table_fingerprint
from reliability.process import StageProcess, run_stage


def forget_cached_state(spark: SparkSession) -> None:
    """Drop the session's cached Delta logs and file listings: a restored folder may hold
    fewer versions than the cache has seen."""
    spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
    spark.catalog.clearCache()


class Lakehouse:
    def __init__(self, work: Path, overrides: dict, spark: SparkSession | None = None):
        self.root = work / "lakehouse"
        self.snapshots = work / "snapshots"
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.overrides = {**overrides, "tables.root": str(self.root)}
        self.cfg = load_config("local", overrides=self.overrides)
        self.spark = spark or get_spark(self.cfg)
        self.tables = Tables(self.spark, self.cfg)

    def snapshot(self, name: str) -> None:
        shutil.copytree(self.root, self.snapshots / name, symlinks=True)

    def restore(self, name: str) -> None:
        shutil.rmtree(self.root)
        shutil.copytree(self.snapshots / name, self.root, symlinks=True)
        forget_cached_state(self.spark)

    def folders(self, keys: tuple[str, ...]) -> list[Path]:
        return [Path(self.tables.location(k)) for k in keys]

    def fingerprints(self, keys: tuple[str, ...]) -> dict[str, Fingerprint]:
        return {k: table_fingerprint(self.tables, k) for k in keys}

    def start(self, stage: str, log: str, **overrides) -> StageProcess:
        return StageProcess(stage, {**self.overrides, **overrides}, self.logs / f"{log}.log")

    def run(self, stage: str, log: str, **overrides) -> StageProcess:
        return run_stage(stage, {**self.overrides, **overrides}, self.logs / f"{log}.log")
