"""Canonical source rows -> validated bronze transactions, and a quarantine for the rest.

Every rejected row is kept with a reason code, its source file and the day it was
quarantined (verbatim, unless ids are pseudonymised: ``prep.pseudonymise``), so that
rows read = rows valid + rows quarantined, always. Reasons, first match wins:
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from microseg.config import IngestConfig
from microseg.prep.sequences import parse_month

REASONS = {
    "MALFORMED_LINE": "the line does not split into the file's columns (quotes, delimiter, field count)",
    "BAD_ENCODING": "the row holds bytes that are not text in the file's encoding (UTF-8 unless the "
                    "mapping's options set encoding)",
    "UNPARSABLE_DATE": "booking_date is not a date in the mapping's format",
    "UNPARSABLE_AMOUNT": "amount is not a number",
    "UNPARSABLE_BALANCE": "balance_after is given but not a number",
    "NEGATIVE_AMOUNT": "the source's amounts are unsigned (its type or column gives the sign: statement "
                       "payments and bills, Berka) but this one is negative",
    "MISSING_CUSTOMER_ID": "customer_id is empty",
    "MISSING_TXN_ID": "txn_id is empty",
    "MISSING_DATE": "booking_date is empty",
    "MISSING_AMOUNT": "amount is empty or not finite",
    "DATE_OUT_OF_WINDOW": "booking_date is outside ingest.date_window",
    "DATE_IN_FUTURE": "booking_date is after today (or ingest.today)",
    "ABSURD_AMOUNT": "|amount| exceeds ingest.max_abs_amount",
    "UNKNOWN_CURRENCY": "currency is not in ingest.currencies",
    "UNKNOWN_CATEGORY": "the category code maps to no taxonomy class (Berka: no rule matches, or the "
                        "type is neither credit nor debit)",
    "DUPLICATE_TXN_ID": "txn_id repeats within the batch (the first row is kept)",
}
__doc__ += "\n".join(f"- ``{k}``: {v}" for k, v in REASONS.items())

BRONZE_COLUMNS = ["customer_id", "txn_id", "booking_date", "month", "amount", "currency",
                  "txn_class", "raw_category", "balance_after", "source", "source_file", "batch_id"]
QUARANTINE_COLUMNS = ["source", "batch_id", "quarantined_on", "source_file", "txn_id", "reason", "raw_row"]


def _blank(col: Column) -> Column:
    return col.isNull() | (F.trim(col) == "")


def _window_end(text: str | None) -> dt.date | None:
    """The last day of the month ``text`` ("YYYY-MM"), or None."""
    if text is None:
        return None
    start = parse_month(text)
    return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)


def _reason(rules: IngestConfig, classes: list[str], today: dt.date) -> Column:
    """The first rule a row breaks, or null."""
    date, amount = F.col("booking_date"), F.col("amount")
    start, end = parse_month(rules.date_window.start), _window_end(rules.date_window.end)
    out_of_window = date < F.lit(start)
    if end is not None:
        out_of_window = out_of_window | (date > F.lit(end))
    unknown_category = F.col("category").isNull() | ~F.col("category").isin(classes)
    if rules.unknown_category == "unclassified":
        unknown_category = F.lit(False)
    return (
        F.when(F.col("parse_error").isNotNull(), F.col("parse_error"))
        .when(_blank(F.col("customer_id")), "MISSING_CUSTOMER_ID")
        .when(_blank(F.col("txn_id")), "MISSING_TXN_ID")
        .when(date.isNull(), "MISSING_DATE")
        .when(amount.isNull() | F.isnan(amount) | (F.abs(amount) == float("inf")), "MISSING_AMOUNT")
        .when(out_of_window, "DATE_OUT_OF_WINDOW")
        .when(date > F.lit(today), "DATE_IN_FUTURE")
        .when(F.abs(amount) > rules.max_abs_amount, "ABSURD_AMOUNT")
        .when(F.col("currency").isNull() | ~F.col("currency").isin(rules.currencies), "UNKNOWN_CURRENCY")
        .when(unknown_category, "UNKNOWN_CATEGORY")
    )


def _first_of_each_txn_id(checked: DataFrame) -> DataFrame:
    """``DUPLICATE_TXN_ID`` for every valid row but the first of its txn_id (ordered by file,
    date, amount, raw row; rows of any reason count)."""
    first = Window.partitionBy("txn_id").orderBy("source_file", "booking_date", "amount", "raw_row")
    return (
        checked.withColumn("_n", F.when(F.col("_reason").isNull(), F.row_number().over(first)))
        .withColumn("_reason", F.coalesce("_reason", F.when(F.col("_n") > 1, "DUPLICATE_TXN_ID")))
        .drop("_n")
    )


def check(rows: DataFrame, rules: IngestConfig, classes: list[str], today: dt.date) -> DataFrame:
    """Canonical rows with ``_reason``: the first rule each breaks, or null if valid."""
    return _first_of_each_txn_id(rows.withColumn("_reason", _reason(rules, classes, today)))


def check_once(rows: DataFrame, rules: IngestConfig, classes: list[str], today: dt.date) -> DataFrame:
    """:func:`check` in one pass over ``rows`` in the usual case, for a batch: persisted
    (unpersist when done) and equal to ``check`` but that valid rows carry no ``raw_row``.

    Rows are read, parsed and checked once into a lean cache (the raw row kept only where
    quarantined), and their txn_ids counted by a 64-bit hash: no shuffle of whole rows.
    Only when some hash repeats are the rows of those txn_ids read again, whole, and
    ordered to find the first of each."""
    key = F.xxhash64("txn_id").alias("_key")
    reason = rows.withColumn("_reason", _reason(rules, classes, today))
    lean = reason.withColumn("raw_row", F.when(F.col("_reason").isNotNull(), F.col("raw_row"))).persist()
    repeated = (lean.where(~_blank(F.col("txn_id"))).groupBy(key).count()
                .where(F.col("count") > 1).select("_key").persist())
    if repeated.count() == 0:   # the usual case; this count fills the cache
        repeated.unpersist()
        return lean             # the cached frame itself: the caller's unpersist releases it
    again = _first_of_each_txn_id(reason.withColumn("_key", key).join(F.broadcast(repeated), "_key", "left_semi"))
    checked = (lean.withColumn("_key", key).join(F.broadcast(repeated), "_key", "left_anti").unionByName(again)
               .drop("_key").persist())
    checked.count()
    lean.unpersist()
    repeated.unpersist()
    return checked


def split(checked: DataFrame, source: str, batch_id: str, rules: IngestConfig,
          classes: list[str], today: dt.date) -> tuple[DataFrame, DataFrame]:
    """(bronze rows, quarantine rows) of checked rows."""
    category = F.col("category")
    if rules.unknown_category == "unclassified":
        category = F.when(category.isin(classes), category).otherwise("unclassified")
    good = checked.where(F.col("_reason").isNull()).select(
        F.trim("customer_id").alias("customer_id"),
        F.trim("txn_id").alias("txn_id"),
        "booking_date",
        F.trunc("booking_date", "month").alias("month"),
        "amount",
        "currency",
        category.alias("txn_class"),
        "raw_category",
        "balance_after",
        F.lit(source).alias("source"),
        "source_file",
        F.lit(batch_id).alias("batch_id"),
    )
    bad = checked.where(F.col("_reason").isNotNull()).select(
        F.lit(source).alias("source"),
        F.lit(batch_id).alias("batch_id"),
        F.lit(today).alias("quarantined_on"),
        "source_file",
        "txn_id",
        F.col("_reason").alias("reason"),
        "raw_row",
    )
    return good, bad


def validate(rows: DataFrame, source: str, batch_id: str, rules: IngestConfig, classes: list[str],
             today: dt.date) -> tuple[DataFrame, DataFrame]:
    """Split canonical rows into (bronze rows, quarantine rows)."""
    return split(check(rows, rules, classes, today), source, batch_id, rules, classes, today)


def reconcile(batch_id: str, expected: dict[str, int], read: dict[str, int]) -> None:
    """Raise naming each file whose rows read (valid + quarantined) differ from the rows
    counted apart from the parser (``expected``); counts only, never a row's values."""
    wrong = sorted(f for f in expected.keys() | read.keys() if expected.get(f, 0) != read.get(f, 0))
    if wrong:
        files = "; ".join(f"{f}: {expected.get(f, 0)} rows by its lines, {read.get(f, 0)} read" for f in wrong[:5])
        raise RuntimeError(f"ingest of batch {batch_id} does not add up in {len(wrong)} file(s): {files}. The "
                           "reader dropped or split rows: check the mapping's options (comment, multiLine, ...)")
