"""Monthly statements (one row per customer-month: closing balance, payments in, bills
out) as canonical transactions: each statement row becomes two rows, a credit on the 1st
(``-in``) and a debit on the last day (``-out``) carrying the closing balance.

```yaml
name: statements
format: csv
columns: {customer_id: account, month: period, balance: closing_balance,
          payments: payments_in, bills: bills_paid, currency: null}
month_format: yyyy-MM
payments_class: transfer_in
bills_class: utilities
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from microseg.config import load_model_file
from microseg.sources.contract import SourceError, conform
from microseg.sources.files import CORRUPT, read_strings

FIELDS = ("customer_id", "month", "balance", "payments", "bills")


class StatementMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    format: Literal["csv", "parquet", "json"]
    options: dict[str, str] = {}
    columns: dict[Literal["customer_id", "month", "balance", "payments", "bills", "currency"], str | None]
    month_format: str = "yyyy-MM"
    default_currency: str = "EUR"
    payments_class: str
    bills_class: str


def load_mapping(path: str | Path) -> StatementMapping:
    return load_model_file(path, StatementMapping, "statements mapping")


def read_statements(spark: SparkSession, files: list[str], mapping: StatementMapping) -> DataFrame:
    strings = read_strings(spark, files, mapping.format, mapping.options)
    for field in FIELDS:
        column = mapping.columns.get(field)
        if not column or column not in strings.columns:
            raise SourceError(f"{files[0]}: statement column for {field!r} ({column!r}) is missing; "
                              f"found {[c for c in strings.columns if c != CORRUPT]}. Fix the file or "
                              f"the mapping '{mapping.name}'")
    col = {f: F.trim(F.col(f"`{mapping.columns[f]}`")) for f in FIELDS}
    month = F.try_to_timestamp(col["month"], F.lit(mapping.month_format)).cast("date")
    currency_col = mapping.columns.get("currency")
    currency = F.trim(F.col(f"`{currency_col}`")) if currency_col else F.lit(mapping.default_currency)
    raw = F.coalesce(F.col(CORRUPT), F.to_json(
        F.struct(*[F.col(f"`{c}`") for c in strings.columns if c != CORRUPT]), {"ignoreNullFields": "false"}))
    legs = F.array(
        F.struct(F.lit("in").alias("leg"), month.alias("date"), col["payments"].try_cast("double").alias("amount"),
                 F.lit(mapping.payments_class).alias("category"), F.lit(None).cast("double").alias("balance")),
        F.struct(F.lit("out").alias("leg"), F.last_day(month).alias("date"),
                 (-col["bills"].try_cast("double")).alias("amount"), F.lit(mapping.bills_class).alias("category"),
                 col["balance"].try_cast("double").alias("balance")),
    )
    parse_error = (
        F.when(F.col(CORRUPT).isNotNull(), "MALFORMED_LINE")
        .when(col["month"].isNotNull() & month.isNull(), "UNPARSABLE_DATE")
        .when((col["payments"].isNotNull() & col["payments"].try_cast("double").isNull())
              | (col["bills"].isNotNull() & col["bills"].try_cast("double").isNull()), "UNPARSABLE_AMOUNT")
        .when(col["balance"].isNotNull() & col["balance"].try_cast("double").isNull(), "UNPARSABLE_BALANCE")
    )
    rows = strings.select(col["customer_id"].alias("customer_id"), col["month"].alias("period"),
                          currency.alias("currency"), raw.alias("raw_row"), parse_error.alias("parse_error"),
                          F.input_file_name().alias("source_file"), F.explode(legs).alias("l"))
    return conform(rows.select(
        "customer_id",
        F.concat_ws("-", "customer_id", "period", "l.leg").alias("txn_id"),
        F.col("l.date").alias("booking_date"),
        F.col("l.amount").alias("amount"),
        "currency",
        F.col("l.category").alias("category"),
        F.concat(F.lit("statement:"), F.col("l.leg")).alias("raw_category"),
        F.col("l.balance").alias("balance_after"),
        "source_file", "raw_row", "parse_error",
    ))
