"""Customer labels for the downstream tasks: loan default and the liquidity index.

- ``loan_default``: 1 if any of the customer's loans has a default status (source loan
  book), else 0; null for customers without a loan.
- ``liquidity_index``: mean end-of-month balance / mean monthly outflow (months of
  spending the customer could cover); null when the customer has no outflow.
- ``liquidity_class``: quantile bucket of the index, 0 (lowest) .. n-1.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from microseg.prep.stable import CENTS, exact_mean


def liquidity(monthly_account: DataFrame) -> DataFrame:
    outflow = exact_mean(F.col("outflow"), CENTS)
    return monthly_account.groupBy("customer_id").agg(
        (exact_mean(F.col("end_balance"), CENTS) / F.when(outflow > 0, outflow)).alias("liquidity_index"),
        F.count("*").cast("int").alias("months"),
    )


def bucket(col: Column, thresholds: list[float]) -> Column:
    """0 for values below the first threshold, ..., len(thresholds) above the last."""
    out = F.lit(0)
    for t in thresholds:
        out = out + F.when(col >= F.lit(t), 1).otherwise(0)
    return F.when(col.isNotNull(), out)


def customer_labels(monthly_account: DataFrame, loans: DataFrame | None, n_classes: int) -> DataFrame:
    liq = liquidity(monthly_account)
    probs = [i / n_classes for i in range(1, n_classes)]
    # A handful of numbers back to the driver: small by construction.
    thresholds = liq.where(F.col("liquidity_index").isNotNull()).approxQuantile("liquidity_index", probs, 0.001)
    out = liq.withColumn("liquidity_class", bucket(F.col("liquidity_index"), thresholds).cast("int"))
    if loans is None:
        return out.withColumn("loan_default", F.lit(None).cast("int"))
    return out.join(loans.select("customer_id", F.col("loan_default").cast("int")), "customer_id", "left")
