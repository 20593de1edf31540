"""Bronze transactions -> monthly spend per class and monthly account totals (silver)."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from microseg.taxonomy import Taxonomy


def class_kinds(spark: SparkSession, taxonomy: Taxonomy) -> DataFrame:
    """A small table: txn_class -> kind (spend or income)."""
    return spark.createDataFrame([(c.name, c.kind) for c in taxonomy.classes], "txn_class string, kind string")


def monthly_spend(transactions: DataFrame, kinds: DataFrame) -> DataFrame:
    """customer x month x spend class: spend (absolute amount of debits) and count."""
    return (
        transactions.where(F.col("amount") < 0)
        .join(F.broadcast(kinds.where(F.col("kind") == "spend")), "txn_class")
        .groupBy("customer_id", "month", "txn_class")
        .agg(F.round(F.sum(-F.col("amount")), 2).alias("spend"), F.count("*").cast("int").alias("n_tx"))
    )


def monthly_account(transactions: DataFrame) -> DataFrame:
    """customer x month: income, outflow, end-of-month balance (last balance_after)."""
    return transactions.groupBy("customer_id", "month").agg(
        F.round(F.sum(F.when(F.col("amount") > 0, F.col("amount")).otherwise(0.0)), 2).alias("income"),
        F.round(F.sum(F.when(F.col("amount") < 0, -F.col("amount")).otherwise(0.0)), 2).alias("outflow"),
        F.max_by("balance_after", F.struct("booking_date", "txn_id")).alias("end_balance"),
        F.count("*").cast("int").alias("n_tx"),
    )
