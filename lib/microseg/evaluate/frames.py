"""Spark side of the evaluation: pick a deterministic sample of customers and bring their
vectors, segments, labels, hand-made features and sequences to the driver.

Everything here is bounded by ``evaluate.sample_rows`` customers (plus per-segment
tables of k rows), so the driver holds a sample, never a full table.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from microseg.prep.stable import CENTS, exact_mean_std, exact_sum
from microseg.taxonomy import TRAITS


def sample_ids(sequences: DataFrame, rows: int, seed: int) -> DataFrame:
    """customer_id, split of about ``rows`` eligible customers, chosen by a seeded hash
    (the same customers every run)."""
    eligible = sequences.where("eligible").select("customer_id", "split")
    total = eligible.count()
    fraction = min(1.0, rows / max(total, 1))
    u = F.pmod(F.xxhash64("customer_id", F.lit(seed + 1)), F.lit(1_000_000)) / 1_000_000.0
    return eligible.where(u < fraction)


def trait_months(personality: DataFrame, months: list[dt.date]) -> DataFrame:
    """customer_id, trait_months: the window's spending personality as a list of
    ``{t: month index, v: five scores}`` (months without spend have none)."""
    index = personality.sparkSession.createDataFrame([(m, i) for i, m in enumerate(months)], "month date, t int")
    cells = personality.join(F.broadcast(index), "month").select(
        "customer_id", F.struct("t", F.array(*TRAITS).alias("v")).alias("cell"))
    return cells.groupBy("customer_id").agg(F.collect_list("cell").alias("trait_months"))


def bespoke_features(monthly_spend: DataFrame, monthly_account: DataFrame, spend_classes: list[str],
                     months: list[dt.date]) -> DataFrame:
    """Hand-made aggregates per customer over the window (what a bespoke model is built on):
    recency, frequency, monetary value; spend share per class; balance, income and outflow
    statistics."""
    in_window = F.col("month").between(months[0], months[-1])
    last = F.lit(months[-1])
    account = monthly_account.where(in_window).groupBy("customer_id").agg(
        F.months_between(last, F.max("month")).alias("recency_months"),
        F.count("*").alias("active_months"),
        F.sum("n_tx").alias("frequency"),
        exact_sum(F.col("outflow"), CENTS).alias("monetary"),
        F.min("end_balance").alias("balance_min"),
        F.max("end_balance").alias("balance_max"),
        *[stat.alias(f"{short}_{name}") for column, short in (("end_balance", "balance"), ("income", "income"),
                                                               ("outflow", "outflow"))
          for name, stat in zip(("mean", "std"), exact_mean_std(F.col(column)))],
    )
    spend = monthly_spend.where(in_window)
    shares = spend.groupBy("customer_id").agg(
        *[(exact_sum(F.when(F.col("txn_class") == c, F.col("spend")).otherwise(0.0), CENTS)
           / F.greatest(exact_sum(F.col("spend"), CENTS), F.lit(1e-9))).alias(f"share__{c}")
          for c in spend_classes])
    return account.join(shares, "customer_id", "left").fillna(0.0)


def to_matrix(pdf: pd.DataFrame, column: str) -> np.ndarray:
    """A pandas column of equal-length arrays -> a float matrix (rows x dims)."""
    return np.stack(pdf[column].to_numpy()).astype(np.float64) if len(pdf) else np.zeros((0, 0))
