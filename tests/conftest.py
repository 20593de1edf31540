"""One local SparkSession with Delta for the whole suite; small DataFrames everywhere."""

from __future__ import annotations

import pytest

from microseg.config import load_config
from microseg.pipeline import Context
from microseg.spark import get_spark


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    cfg = load_config("local", overrides={"tables.root": str(tmp_path_factory.mktemp("lakehouse"))})
    session = get_spark(cfg)
    yield session
    session.stop()


@pytest.fixture
def cfg(tmp_path):
    """The embedded default, scaled down, writing under a fresh lakehouse folder."""
    return load_config("local", overrides={
        "tables.root": str(tmp_path / "lakehouse"),
        "spark.shuffle_partitions": 4,
        "generator.customers": 60,
        "generator.months": 12,
        "sequences.reference": "as_of",   # 12 months leave no room for a loan's 6 + 6 months
        "generator.partitions": 2,
        "sequences.window_months": 12,
        "sequences.min_months": 4,
        "model.hidden": 8,
        "model.epochs": 2,
        "model.batch_size": 32,
        "segment.k": 3,
    })


@pytest.fixture
def ctx(cfg, spark):
    return Context.create(cfg, spark)


def canonical_rows(spark, rows):
    """Canonical-contract rows from (customer_id, txn_id, booking_date, amount, currency,
    category, balance_after) tuples, as an adapter would produce them."""
    from pyspark.sql import functions as F

    from microseg.sources.contract import conform

    df = spark.createDataFrame(rows, "customer_id string, txn_id string, booking_date date, amount double, "
                                     "currency string, category string, balance_after double")
    return conform(df.select(
        "*", F.col("category").alias("raw_category"), F.lit("test.csv").alias("source_file"),
        F.to_json(F.struct(*df.columns)).alias("raw_row"), F.lit(None).cast("string").alias("parse_error")))
