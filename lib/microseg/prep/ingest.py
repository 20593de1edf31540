"""Raw source rows -> validated bronze transactions, and a quarantine for the rest.

Every rejected row is kept verbatim (as JSON) with a reason code, so that
rows read = rows valid + rows quarantined, always.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

REASONS = {
    "MISSING_CUSTOMER_ID": "customer_id is empty",
    "MISSING_TXN_ID": "txn_id is empty",
    "MISSING_DATE": "booking_date is empty or not a date",
    "MISSING_AMOUNT": "amount is empty or not a number",
    "UNKNOWN_CURRENCY": "currency is not in ingest.currencies",
    "UNKNOWN_CATEGORY": "category is not a class of the taxonomy",
    "DUPLICATE_TXN_ID": "txn_id repeats within the batch (the first row is kept)",
}

BRONZE_COLUMNS = ["customer_id", "txn_id", "booking_date", "month", "amount", "currency",
                  "txn_class", "balance_after", "source", "batch_id"]


def _blank(col: Column) -> Column:
    return col.isNull() | (F.trim(col.cast("string")) == "")


def _reason(currencies: list[str], classes: list[str]) -> Column:
    """The first rule a row breaks, or null."""
    return (
        F.when(_blank(F.col("customer_id")), "MISSING_CUSTOMER_ID")
        .when(_blank(F.col("txn_id")), "MISSING_TXN_ID")
        .when(F.col("booking_date").isNull(), "MISSING_DATE")
        .when(F.col("amount").isNull() | F.isnan("amount"), "MISSING_AMOUNT")
        .when(~F.col("currency").isin(currencies), "UNKNOWN_CURRENCY")
        .when(~F.col("category").isin(classes), "UNKNOWN_CATEGORY")
    )


def validate(raw: DataFrame, source: str, batch_id: str, currencies: list[str],
             classes: list[str]) -> tuple[DataFrame, DataFrame]:
    """Split raw rows into (bronze rows, quarantine rows)."""
    first = Window.partitionBy("txn_id").orderBy("booking_date", "amount", "customer_id", "category")
    checked = (
        raw.withColumn("_raw", F.to_json(F.struct(*[F.col(c) for c in raw.columns])))
        .withColumn("_reason", _reason(currencies, classes))
        .withColumn("_n", F.when(F.col("_reason").isNull(), F.row_number().over(first)))
        .withColumn("_reason", F.coalesce("_reason", F.when(F.col("_n") > 1, "DUPLICATE_TXN_ID")))
    )
    good = (
        checked.where(F.col("_reason").isNull())
        .select(
            F.col("customer_id").cast("string"),
            F.col("txn_id").cast("string"),
            F.col("booking_date").cast("date"),
            F.trunc("booking_date", "month").alias("month"),
            F.col("amount").cast("double"),
            F.col("currency"),
            F.col("category").alias("txn_class"),
            F.col("balance_after").cast("double"),
            F.lit(source).alias("source"),
            F.lit(batch_id).alias("batch_id"),
        )
    )
    bad = checked.where(F.col("_reason").isNotNull()).select(
        F.lit(source).alias("source"),
        F.lit(batch_id).alias("batch_id"),
        F.col("txn_id").cast("string").alias("txn_id"),
        F.col("_reason").alias("reason"),
        F.col("_raw").alias("raw_row"),
    )
    return good, bad
