"""The SparkSession: a local one with Delta for the embedded default, else the cluster's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from microseg.config import Settings

DELTA_EXTENSIONS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def delta_jars() -> list[str]:
    """Delta jars fetched once by ``scripts/env.sh`` into ``$MICROSEG_JARS`` (offline after)."""
    folder = os.environ.get("MICROSEG_JARS")
    if not folder:
        return []
    jars = sorted(str(p) for p in Path(folder).glob("*.jar"))
    if not jars:
        raise RuntimeError(f"MICROSEG_JARS={folder} holds no jars; run `make env` to fetch them")
    return jars


def get_spark(cfg: Settings) -> SparkSession:
    """Return the active session, or build a local one with Delta when ``spark.master`` is set."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName(cfg.spark.app_name)
    if cfg.spark.master:
        # Local mode: workers run this interpreter; one thread per torch task.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.master(cfg.spark.master)
        for key, value in DELTA_EXTENSIONS.items():
            builder = builder.config(key, value)
        jars = delta_jars()
        if jars:
            builder = builder.config("spark.jars", ",".join(jars))
        else:
            from delta import configure_spark_with_delta_pip

            builder = configure_spark_with_delta_pip(builder)
        builder = (
            builder.config("spark.ui.enabled", "false")
            .config("spark.driver.memory", os.environ.get("MICROSEG_DRIVER_MEMORY", "4g"))
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.databricks.delta.snapshotPartitions", "2")
            .config("spark.sql.adaptive.enabled", "true")
            .config("spark.ui.showConsoleProgress", "false")
        )
    builder = (
        builder.config("spark.sql.shuffle.partitions", str(cfg.spark.shuffle_partitions))
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.spark.arrow_batch_size))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    for key, value in cfg.spark.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
