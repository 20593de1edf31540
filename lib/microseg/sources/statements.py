"""Monthly statements (one row per customer-month: closing balance, payments in, bills
out) as canonical transactions: each statement row becomes two rows, a credit on the 1st
(``-in``) and a debit on the last day (``-out``) carrying the closing balance. Payments
and bills are totals (>= 0, signed by their leg); a statement row that cannot be read
whole quarantines both legs with one reason.

```yaml
name: statements
format: csv
columns: {customer_id: account, month: period, balance: closing_balance,
          payments: payments_in, bills: bills_paid, currency: null}
month_format: yyyy-MM
payments_class: transfer_in
bills_class: utilities
```

With a category column (``columns.category``) each row's bills go to the class its value
maps to in ``categories`` (source value -> taxonomy class, checked at load); a value the
map lacks leaves the bill leg without a class, so ingest quarantines it as
``UNKNOWN_CATEGORY`` (the payment leg stays); without one every bill is ``bills_class``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from microseg.config import ConfigError, load_model_file
from microseg.sources.contract import conform, undecodable
from microseg.sources.files import CORRUPT, parse_date, read_strings

FIELDS = ("customer_id", "month", "balance", "payments", "bills")


class StatementMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    format: Literal["csv", "parquet", "json"]
    options: dict[str, str] = {}
    columns: dict[Literal["customer_id", "month", "balance", "payments", "bills", "currency", "category"],
                  str | None]
    month_format: str = "yyyy-MM"
    default_currency: str = "EUR"    # the currency of every row when columns.currency is null
    payments_class: str
    bills_class: str
    categories: dict[str, str] = {}     # with columns.category: source value -> class of the bills
    identifying: tuple[str, ...] = ()   # source columns besides the customer id that hold ids

    @field_validator("columns")
    @classmethod
    def _every_field_mapped(cls, cols: dict) -> dict:
        unmapped = [f for f in FIELDS if not cols.get(f)]
        if unmapped:
            raise ValueError(f"statement fields {unmapped} need a source column")
        return cols

    @model_validator(mode="after")
    def _currency_read_once(self) -> StatementMapping:
        if self.columns.get("currency") and "default_currency" in self.model_fields_set:
            raise ValueError("default_currency: read only when columns.currency is null (here it is mapped), "
                             "so nothing would read it; remove one of them")
        return self

    @model_validator(mode="after")
    def _categories_with_their_column(self) -> StatementMapping:
        if bool(self.columns.get("category")) != bool(self.categories):
            raise ValueError("`columns.category` (the source column) and `categories` (source value -> class) "
                             "go together: set both to class bills by category, or neither for `bills_class`")
        return self


def load_mapping(path: str | Path, classes: Iterable[str]) -> StatementMapping:
    """Read and validate the mapping; every class it names must be one of ``classes``."""
    mapping, known = load_model_file(path, StatementMapping, "statements mapping"), set(classes)
    named = {"payments_class": mapping.payments_class, "bills_class": mapping.bills_class,
             **{f"categories[{k!r}]": v for k, v in mapping.categories.items()}}
    unknown = {key: c for key, c in named.items() if c not in known}
    if unknown:
        raise ConfigError(f"{path}: {', '.join(f'{k} maps to {c!r}' for k, c in unknown.items())}, not a class of "
                          f"the taxonomy; use one of {sorted(known)}")
    return mapping


def bills_class(mapping: StatementMapping) -> Column:
    """Each row's class of its bills: ``categories`` of the category column's value (null
    for a value it lacks), or ``bills_class``."""
    source = mapping.columns.get("category")
    if not source:
        return F.lit(mapping.bills_class)
    pairs = [F.lit(x) for kv in mapping.categories.items() for x in kv]
    return F.try_element_at(F.create_map(*pairs), F.trim(F.col(f"`{source}`")))


def read_statements(spark: SparkSession, files: list[str], mapping: StatementMapping) -> DataFrame:
    wanted = {f: mapping.columns[f] for f in (*FIELDS, "currency", "category") if mapping.columns.get(f)}
    strings = read_strings(spark, files, mapping.format, mapping.options, wanted, mapping.name)
    col = {f: F.trim(F.col(f"`{mapping.columns[f]}`")) for f in FIELDS}
    month = parse_date(col["month"], mapping.month_format)
    currency_col = mapping.columns.get("currency")
    currency = F.trim(F.col(f"`{currency_col}`")) if currency_col else F.lit(mapping.default_currency)
    raw = F.coalesce(F.col(CORRUPT), F.to_json(
        F.struct(*[F.col(f"`{c}`") for c in strings.columns if c != CORRUPT]), {"ignoreNullFields": "false"}))
    payments, bills, balance = (col[f].try_cast("double") for f in ("payments", "bills", "balance"))
    legs = F.array(
        F.struct(F.lit("in").alias("leg"), month.alias("date"), payments.alias("amount"),
                 F.lit(mapping.payments_class).alias("category"), F.lit(None).cast("double").alias("balance")),
        F.struct(F.lit("out").alias("leg"), F.last_day(month).alias("date"),
                 (-bills).alias("amount"), bills_class(mapping).alias("category"), balance.alias("balance")),
    )
    parse_error = (   # a statement row is read whole or not at all: both legs share it
        F.when(F.col(CORRUPT).isNotNull(), "MALFORMED_LINE")
        .when(undecodable(raw), "BAD_ENCODING")
        .when(col["month"].isNotNull() & month.isNull(), "UNPARSABLE_DATE")
        .when((col["payments"].isNotNull() & payments.isNull())
              | (col["bills"].isNotNull() & bills.isNull()), "UNPARSABLE_AMOUNT")
        .when(col["balance"].isNotNull() & balance.isNull(), "UNPARSABLE_BALANCE")
        .when((payments < 0) | (bills < 0), "NEGATIVE_AMOUNT")   # both are totals, signed by their leg
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
