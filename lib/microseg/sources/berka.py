"""Source adapter for the Berka / PKDD'99 bank format (Czech bank, 1993-1998).

Files are ``;``-separated with a header row. Every column is read as a string and parsed
with Spark functions that yield null instead of failing, so one bad field marks one row
(``parse_error``) and never stops the read. A file that is wrong as a whole (missing,
empty, a required column absent) raises :class:`SourceError` before a frame is returned.
Transactions belong to accounts, so ``customer_id`` is the account id throughout.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from microseg.config import ConfigError, load_model_file
from microseg.sources.contract import SourceError, conform, shown_header, undecodable

ANY = "any"  # rule wildcard: matches every value; null in a rule matches "none" only
CORRUPT = "_corrupt_record"
TRANS_COLUMNS = ("trans_id", "account_id", "date", "type", "operation", "amount", "balance",
                 "k_symbol")
LOAN_COLUMNS = ("loan_id", "account_id", "date", "amount", "duration", "status")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Strict):
    """(type, operation, k_symbol) -> a taxonomy class; each field a value, ``any`` or null."""
    type: str | None
    operation: str | None
    k_symbol: str | None
    txn_class: str

    @property
    def key(self) -> str:
        return "|".join("null" if v is None else v for v in (self.type, self.operation, self.k_symbol))


class BerkaFiles(_Strict):
    """The files the pipeline reads, by name inside ``source.path``."""
    transactions: str = "trans.asc"
    loans: str = "loan.asc"


class BerkaMapping(_Strict):
    currency: str
    files: BerkaFiles = BerkaFiles()
    credit_types: tuple[str, ...] = Field(min_length=1)
    debit_types: tuple[str, ...] = Field(min_length=1)
    rules: tuple[Rule, ...] = Field(min_length=1)
    identifying: tuple[str, ...] = ()   # trans.asc columns besides account_id and trans_id that hold ids

    @model_validator(mode="after")
    def _signs(self) -> BerkaMapping:
        both = sorted(set(self.credit_types) & set(self.debit_types))
        if both:
            raise ValueError(f"types {both} are both credit_types and debit_types")
        return self


def load_mapping(path: str | Path, classes: Iterable[str]) -> BerkaMapping:
    """Read and validate the mapping; every rule's class must be one of ``classes``."""
    mapping = load_model_file(path, BerkaMapping, "Berka mapping")
    known = set(classes)
    for i, rule in enumerate(mapping.rules):
        if rule.txn_class not in known:
            raise ConfigError(
                f"{path}: rule {i} ({rule.key}) maps to {rule.txn_class!r}, which is not a class "
                f"of the taxonomy; use one of {sorted(known)}")
    return mapping


def load_files(path: str | Path) -> BerkaFiles:
    """The mapping's file names (the mapping validated, its rules' classes aside)."""
    return load_model_file(path, BerkaMapping, "Berka mapping").files


def _path(folder: str | Path, name: str) -> str:
    return f"{str(folder).rstrip('/')}/{name}"  # string join keeps URIs such as s3://


def _read(spark: SparkSession, path: str, required: Iterable[str]) -> DataFrame:
    """All columns of a Berka file as strings, plus ``_corrupt_record`` for malformed lines."""
    reader = spark.read.option("header", True).option("sep", ";")
    try:
        columns = reader.csv(path).columns  # reads the header line only
    except AnalysisException as err:
        if err.getCondition() == "PATH_NOT_FOUND":
            raise SourceError(f"{path} does not exist; put the Berka file there") from None
        raise
    if not columns:
        raise SourceError(f"{path} is empty (no header row); copy the file again from the source")
    missing = [c for c in required if c not in columns]
    if missing:
        raise SourceError(f"{path} lacks the required column(s) {missing} (its header has "
                          f"{shown_header(columns, required)}); restore the original Berka header")
    schema = StructType([StructField(c, StringType()) for c in [*columns, CORRUPT]])
    return (reader.schema(schema).option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT).csv(path))


def _text(name: str) -> Column:
    """The trimmed field, null when empty or blank ("none")."""
    value = F.trim(F.col(name))
    return F.when(value != "", value)


def _date(name: str) -> Column:
    """A ``YYMMDD`` field (year 19YY) as a date, null when it is not one."""
    value = F.trim(F.col(name))
    parsed = F.try_to_timestamp(F.concat(F.lit("19"), value), F.lit("yyyyMMdd")).cast("date")
    return F.when(value.rlike(r"^\d{6}$"), parsed)


def _number(name: str) -> Column:
    return F.col(name).try_cast("double")


def _matches(rule: Rule) -> Column:
    condition = F.lit(True)
    for field in ("type", "operation", "k_symbol"):
        want = getattr(rule, field)
        if want != ANY:
            value = _text(field)
            condition &= value.isNull() if want is None else value == want
    return condition


def _category(rules: Iterable[Rule]) -> Column:
    """The class of the first matching rule, or null."""
    category = F.lit(None).cast("string")
    for rule in reversed(list(rules)):
        category = F.when(_matches(rule), rule.txn_class).otherwise(category)
    return category


def read_transactions(spark: SparkSession, folder: str | Path, mapping: BerkaMapping) -> DataFrame:
    """``trans.asc`` as canonical rows (see ``contract.CANONICAL``)."""
    path = _path(folder, mapping.files.transactions)
    raw = _read(spark, path, TRANS_COLUMNS)
    fields = [c for c in raw.columns if c != CORRUPT]
    kind = _text("type")
    sign = F.when(kind.isin(*mapping.credit_types), 1.0).when(kind.isin(*mapping.debit_types), -1.0)
    amount = sign * _number("amount")  # null also when the type is neither credit nor debit
    json = {"ignoreNullFields": "false"}
    raw_row = F.when(F.col(CORRUPT).isNull(), F.to_json(F.struct(*fields), json)).otherwise(
        F.to_json(F.struct(*fields, F.col(CORRUPT).alias("line")), json))
    parse_error = (
        F.when(F.col(CORRUPT).isNotNull(), "MALFORMED_LINE")
        .when(undecodable(raw_row), "BAD_ENCODING")
        .when(_date("date").isNull(), "UNPARSABLE_DATE")
        .when(sign.isNull(), "UNKNOWN_CATEGORY")            # a type that is neither credit nor debit
        .when(amount.isNull(), "UNPARSABLE_AMOUNT")
        .when(_number("amount") < 0, "NEGATIVE_AMOUNT")     # Berka amounts are unsigned; the type signs them
        .when(_number("balance").isNull(), "UNPARSABLE_BALANCE")
    )
    return conform(raw.select(
        _text("account_id").alias("customer_id"),
        _text("trans_id").alias("txn_id"),
        _date("date").alias("booking_date"),
        amount.alias("amount"),
        F.lit(mapping.currency).alias("currency"),
        _category(mapping.rules).alias("category"),
        F.concat_ws("|", *[F.coalesce(_text(c), F.lit("")) for c in ("type", "operation", "k_symbol")])
        .alias("raw_category"),
        _number("balance").alias("balance_after"),
        F.input_file_name().alias("source_file"),
        raw_row.alias("raw_row"),
        parse_error.alias("parse_error"),
    ))


def read_loans(spark: SparkSession, folder: str | Path, files: BerkaFiles) -> DataFrame:
    """The mapping's loan book (``files.loans``): one row per loan; ``loan_default`` 1 for
    status B or D, 0 for A or C, else null."""
    raw = _read(spark, _path(folder, files.loans), LOAN_COLUMNS)
    status = _text("status")
    return raw.select(
        _text("account_id").alias("customer_id"),
        _text("loan_id").alias("loan_id"),
        _date("date").alias("loan_date"),
        _number("amount").alias("loan_amount"),
        F.col("duration").try_cast("int").alias("duration_months"),
        status.alias("loan_status"),
        F.when(status.isin("B", "D"), 1).when(status.isin("A", "C"), 0).cast("int").alias("loan_default"),
    )
