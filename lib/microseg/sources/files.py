"""Generic CSV / Parquet / JSON transaction files, read through a column mapping in conf/.

A bank with a new file layout writes a mapping (see ``conf/sources/*.yaml``), not Python:

```yaml
name: card_feed
format: csv                      # csv | parquet | json
options: {sep: ";"}              # passed to Spark's reader
columns:                         # canonical column <- source column
  customer_id: cust_no
  txn_id: id
  booking_date: {column: posted, format: dd.MM.yyyy}
  amount: amt
  currency: {column: ccy, default: EUR}
  category: mcc
  balance_after: null            # not in this source
category_codes: mcc              # class (names already) | map (category_map) | mcc (conf/mcc.yaml)
amount_sign: signed              # signed | debit_positive (positive amounts are spend)
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from microseg.config import load_model_file
from microseg.sources.contract import REQUIRED, SourceError, conform

CORRUPT = "_corrupt_record"
EXTENSIONS = {"csv": (".csv", ".csv.gz", ".txt"), "json": (".json", ".jsonl", ".json.gz"),
              "parquet": (".parquet",)}


class ColumnSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    column: str | None = None
    format: str | None = None      # dates: a Spark datetime pattern
    default: str | None = None     # used when the column is absent or empty


class FileMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    format: Literal["csv", "parquet", "json"]
    options: dict[str, str] = {}
    columns: dict[str, ColumnSpec | str | None]
    category_codes: Literal["class", "map", "mcc"] = "class"
    category_map: dict[str, str] = {}
    amount_sign: Literal["signed", "debit_positive"] = "signed"

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, cols: dict) -> dict:
        allowed = {"customer_id", "txn_id", "booking_date", "amount", "currency", "category",
                   "balance_after"}
        unknown = sorted(set(cols) - allowed)
        if unknown:
            raise ValueError(f"unknown canonical columns {unknown}; allowed: {sorted(allowed)}")
        missing = [c for c in REQUIRED if not cols.get(c)]
        if missing:
            raise ValueError(f"required canonical columns {missing} need a source column")
        return cols

    def spec(self, name: str) -> ColumnSpec:
        value = self.columns.get(name)
        if value is None:
            return ColumnSpec()
        return ColumnSpec(column=value) if isinstance(value, str) else value


def load_mapping(path: str | Path) -> FileMapping:
    return load_model_file(path, FileMapping, "source mapping")


def list_files(spark: SparkSession, path: str) -> list[tuple[str, int]]:
    """(file, size) under ``path`` (a file, folder or glob), through Hadoop's FileSystem:
    metadata only, works the same on local disk, HDFS and object stores."""
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    statuses = fs.globStatus(hpath) or []
    out: list[tuple[str, int]] = []
    for st in statuses:
        if st.isDirectory():
            it = fs.listFiles(st.getPath(), True)
            while it.hasNext():
                f = it.next()
                out.append((f.getPath().toString(), f.getLen()))
        else:
            out.append((st.getPath().toString(), st.getLen()))
    hidden = ("_", ".")
    return sorted((p, n) for p, n in out if not p.rsplit("/", 1)[-1].startswith(hidden))


def check_files(files: list[tuple[str, int]], path: str, fmt: str) -> list[str]:
    """The files to read; raises SourceError for none, empty or wrong-format files."""
    if not files:
        raise SourceError(f"no files at {path}; check source.path")
    wrong = [p for p, _ in files if not p.lower().endswith(EXTENSIONS[fmt])]
    if wrong:
        raise SourceError(f"{wrong[0]}: not a {fmt} file (expected {', '.join(EXTENSIONS[fmt])}); "
                          f"{len(wrong)} such file(s) under {path}: move them out or fix source.mapping format")
    empty = [p for p, n in files if n == 0]
    if empty:
        raise SourceError(f"{empty[0]}: file is empty; remove it or replace it with the full export")
    return [p for p, _ in files]


def read_strings(spark: SparkSession, files: list[str], fmt: str, options: dict[str, str]) -> DataFrame:
    """Every source column as a string, plus the malformed line (CSV/JSON) if any."""
    if fmt == "parquet":
        df = spark.read.options(**options).option("recursiveFileLookup", "true").parquet(*files)
        return df.select(*[F.col(c).cast("string").alias(c) for c in df.columns],
                         F.lit(None).cast("string").alias(CORRUPT))
    reader = spark.read.options(**options).option("recursiveFileLookup", "true")
    if fmt == "csv":
        header = spark.read.options(**options).option("header", "true").csv(files[0]).columns
        schema = StructType([StructField(c, StringType()) for c in header] + [StructField(CORRUPT, StringType())])
        return (reader.option("header", "true").option("enforceSchema", "false")
                .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
                .schema(schema).csv(files))
    sample = spark.read.options(**options).json(files[0])
    names = [c for c in sample.columns if c != CORRUPT]
    schema = StructType([StructField(c, StringType()) for c in names] + [StructField(CORRUPT, StringType())])
    return (reader.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
            .schema(schema).json(files))


def _source_col(df: DataFrame, spec: ColumnSpec) -> Column:
    col = F.col(f"`{spec.column}`") if spec.column and spec.column in df.columns else F.lit(None).cast("string")
    col = F.when(F.trim(col) == "", None).otherwise(F.trim(col))
    return F.coalesce(col, F.lit(spec.default)) if spec.default is not None else col


def _number(text: Column) -> Column:
    return text.try_cast("double")


def canonical(df: DataFrame, mapping: FileMapping, mcc_table=None) -> DataFrame:
    """Map a strings-only frame to the canonical contract with parse errors marked."""
    source_cols = [c for c in df.columns if c != CORRUPT]
    get = {name: _source_col(df, mapping.spec(name)) for name in
           ("customer_id", "txn_id", "booking_date", "amount", "currency", "category", "balance_after")}
    date_fmt = mapping.spec("booking_date").format or "yyyy-MM-dd"
    date = F.try_to_timestamp(get["booking_date"], F.lit(date_fmt)).cast("date")
    amount = _number(get["amount"])
    if mapping.amount_sign == "debit_positive":
        amount = -amount
    balance = _number(get["balance_after"])
    code = get["category"]
    if mapping.category_codes == "map":
        category = F.element_at(F.create_map(*[F.lit(x) for kv in mapping.category_map.items() for x in kv]), code) \
            if mapping.category_map else F.lit(None).cast("string")
    elif mapping.category_codes == "mcc":
        from microseg.sources.mcc import mcc_class

        category = mcc_class(code, mcc_table)
    else:
        category = code
    parse_error = (
        F.when(F.col(CORRUPT).isNotNull(), "MALFORMED_LINE")
        .when(get["booking_date"].isNotNull() & date.isNull(), "UNPARSABLE_DATE")
        .when(get["amount"].isNotNull() & amount.isNull(), "UNPARSABLE_AMOUNT")
        .when(get["balance_after"].isNotNull() & balance.isNull(), "UNPARSABLE_BALANCE")
    )
    raw_row = F.coalesce(F.col(CORRUPT), F.to_json(F.struct(*[F.col(f"`{c}`") for c in source_cols]),
                                                  {"ignoreNullFields": "false"}))
    return conform(df.select(
        get["customer_id"].alias("customer_id"),
        get["txn_id"].alias("txn_id"),
        date.alias("booking_date"),
        amount.alias("amount"),
        get["currency"].alias("currency"),
        category.alias("category"),
        code.alias("raw_category"),
        balance.alias("balance_after"),
        F.input_file_name().alias("source_file"),
        raw_row.alias("raw_row"),
        parse_error.alias("parse_error"),
    ))


def read_files(spark: SparkSession, files: list[str], mapping: FileMapping, mcc_table=None) -> DataFrame:
    """Canonical rows from ``files`` (checked by :func:`check_files`); whole-file problems
    raise SourceError naming the file."""
    try:
        strings = read_strings(spark, files, mapping.format, mapping.options)
    except Exception as err:  # Spark's reader errors name the file; keep them, add what to do
        raise SourceError(f"cannot read {files[0]} (and {len(files) - 1} more) as {mapping.format}: "
                          f"{err}; check the files and the mapping's format and options") from None
    needed = {name: spec.column for name in ("customer_id", "txn_id", "booking_date", "amount")
              if (spec := mapping.spec(name)).column and spec.default is None}
    for name, column in needed.items():
        if column not in strings.columns:
            raise SourceError(f"{files[0]}: required column {column!r} (mapped to {name}) is missing; "
                              f"found {[c for c in strings.columns if c != CORRUPT]}. Fix the file or "
                              f"the mapping '{mapping.name}'")
    return canonical(strings, mapping, mcc_table)
