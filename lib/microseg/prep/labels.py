"""Forward labels for the downstream tasks, observed after each customer's reference month
(``prep/reference.py``), never over the months the model reads.

- ``loan_default``: 1 if a loan granted up to the reference month has a default status
  (source loan book), else 0; null for customers without one. With ``loan_date``
  references that is the loan granted at the reference. Undated loans count only for
  ``as_of`` references (nothing places them in time).
- ``liquidity_index``: mean end-of-month balance / mean monthly outflow (months of spending
  the customer could cover) over the ``horizon`` months after the reference month; null
  when fewer than ``horizon`` of them are observed or there is no outflow.
- ``liquidity_class``: quantile bucket of the index, 0 (lowest) .. n-1.

A source without balances (no ``balance_after`` column, e.g. a card feed) has no
end-of-month balance, so no liquidity index for anyone: :func:`balance_coverage` counts
the customers without one and :func:`balance_gap` says so in words.
"""

from __future__ import annotations

import logging

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from microseg.prep.stable import CENTS, exact_mean

log = logging.getLogger("microseg.labels")
NO_BALANCES = "no balances in the source"


def forward_liquidity(monthly_account: DataFrame, references: DataFrame, horizon: int) -> DataFrame:
    """customer_id, months_observed, liquidity_index over the ``horizon`` months after the
    reference month, for customers with any of them."""
    ref = F.col("reference_month")
    after = monthly_account.join(references, "customer_id").where(
        (F.col("month") > ref) & (F.col("month") <= F.add_months(ref, horizon)))
    outflow = exact_mean(F.col("outflow"), CENTS, "outflow of silver.monthly_account")
    balance = exact_mean(F.col("end_balance"), CENTS, "end_balance of silver.monthly_account")
    n = F.count("*").cast("int")
    return after.groupBy("customer_id").agg(
        n.alias("months_observed"),
        F.when(n == horizon, balance / F.when(outflow > 0, outflow)).alias("liquidity_index"),
    )


def loan_default(loans: DataFrame, references: DataFrame, undated_count: bool) -> DataFrame:
    """customer_id, loan_default: the worst status of the loans granted up to the reference."""
    month = F.trunc("loan_date", "month")
    granted = F.coalesce(month <= F.col("reference_month"), F.lit(undated_count))
    return (loans.join(references, "customer_id").where(granted)
            .groupBy("customer_id").agg(F.max(F.col("loan_default").cast("int")).alias("loan_default")))


def bucket(col: Column, thresholds: list[float]) -> Column:
    """0 for values below the first threshold, ..., len(thresholds) above the last."""
    out = F.lit(0)
    for t in thresholds:
        out = out + F.when(col >= F.lit(t), 1).otherwise(0)
    return F.when(col.isNotNull(), out)


def customer_labels(monthly_account: DataFrame, references: DataFrame, loans: DataFrame | None,
                    n_classes: int, horizon: int, undated_count: bool) -> DataFrame:
    """One row per customer of ``references``: reference_month and the labels after it."""
    liq = references.join(forward_liquidity(monthly_account, references, horizon), "customer_id", "left")
    liq = liq.withColumn("months_observed", F.coalesce("months_observed", F.lit(0)))
    probs = [i / n_classes for i in range(1, n_classes)]
    # A handful of numbers back to the driver: small by construction.
    labelled = liq.where(F.col("liquidity_index").isNotNull())
    thresholds = labelled.approxQuantile("liquidity_index", probs, 0.001) if not labelled.isEmpty() else []
    out = liq.withColumn("liquidity_class", bucket(F.col("liquidity_index"), thresholds).cast("int"))
    if loans is None:
        return out.withColumn("loan_default", F.lit(None).cast("int"))
    return out.join(loan_default(loans, references, undated_count), "customer_id", "left")


def balance_coverage(monthly_account: DataFrame) -> tuple[int, int]:
    """(customers, customers without any end-of-month balance): two numbers to the driver."""
    per = monthly_account.groupBy("customer_id").agg(F.count("end_balance").alias("balances"))
    row = per.agg(F.count("*").alias("customers"),
                  F.count_if(F.col("balances") == 0).alias("without")).head()
    return int(row["customers"]), int(row["without"] or 0)


def liquidity_unavailable(customers: int, without: int) -> str | None:
    """Why no customer can have a liquidity index (``NO_BALANCES``), or None."""
    return NO_BALANCES if customers and without == customers else None


def balance_gap(customers: int, without: int) -> str | None:
    """Why some or all customers get no liquidity index for lack of balances, or None."""
    if liquidity_unavailable(customers, without):
        return f"{NO_BALANCES} (no balance_after column, or no value in it): liquidity cannot be computed"
    if without:
        return f"{without} of {customers} customers have {NO_BALANCES}: their liquidity index is null"
    return None
