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
identifying: [counterparty_iban] # more source columns holding ids: pseudonymised in the quarantine too
```
"""

from __future__ import annotations

from functools import reduce
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from microseg.config import load_model_file
from microseg.sources.contract import REPLACEMENT, REQUIRED, SourceError, conform, shown_header, undecodable

CORRUPT = "_corrupt_record"
ISO_DATE = "yyyy-MM-dd"
MAPPED = ("customer_id", "txn_id", "booking_date", "amount", "currency", "category", "balance_after")
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
    identifying: tuple[str, ...] = ()   # source columns besides the customer and transaction ids

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, cols: dict) -> dict:
        allowed = set(MAPPED)
        unknown = sorted(set(cols) - allowed)
        if unknown:
            raise ValueError(f"unknown canonical columns {unknown}; allowed: {sorted(allowed)}")
        missing = [c for c in REQUIRED if not cols.get(c)]
        if missing:
            raise ValueError(f"required canonical columns {missing} need a source column")
        return cols

    @model_validator(mode="after")
    def _every_key_read(self) -> FileMapping:
        formatted = [name for name in self.columns if name != "booking_date" and self.spec(name).format]
        if formatted:
            raise ValueError(f"columns.{formatted[0]}.format: only booking_date reads a format, so nothing "
                             "would read it; remove it")
        if self.category_map and self.category_codes != "map":
            raise ValueError(f"category_map: read only with category_codes: map (here {self.category_codes!r}), "
                             "so nothing would read it; remove it or set category_codes: map")
        return self

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


def record_counts(spark: SparkSession, files: list[str], fmt: str, header: int) -> dict[str, int]:
    """Records per file (by Spark's file name, as in ``source_file``), counted apart from
    the parsers: a text file's non-blank lines less ``header``, a Parquet file's rows. One
    extra scan of the raw text in Spark; one row per file reaches the driver."""
    if fmt == "parquet":
        df, blank = spark.read.parquet(*files), F.lit(False)
    else:   # the line splitting the CSV and JSON readers use; they skip blank lines too
        df = spark.read.text(files)
        blank = ~F.col("value").rlike(r"[^\x00-\x20]")
    counts = df.where(~blank).groupBy(F.input_file_name()).count().collect()
    return {name: n - header for name, n in counts}


def first_line(spark: SparkSession, path: str, encoding: str) -> str:
    """The first non-blank line of a text file (decompressed if its name says so), without a
    byte-order mark: read on the driver through Hadoop's FileSystem, a few bytes per file."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    stream = hpath.getFileSystem(conf).open(hpath)
    try:
        codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf).getCodec(hpath)
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(
            codec.createInputStream(stream) if codec else stream, encoding))
        line = reader.readLine()
        while line is not None and not line.strip():
            line = reader.readLine()
    finally:
        stream.close()
    return (line or "").lstrip("\ufeff")


def csv_headers(spark: SparkSession, files: list[str],
                options: dict[str, str]) -> dict[tuple[str, ...], list[str]]:
    """The files grouped by the columns of their header row (most batches: one group).
    SourceError naming the file when a header is not text in the mapping's encoding."""
    encoding = options.get("encoding") or options.get("charset") or "UTF-8"
    columns: dict[str, tuple[str, ...]] = {}     # header line -> its columns, parsed by Spark
    groups: dict[tuple[str, ...], list[str]] = {}
    for path in files:
        line = first_line(spark, path, encoding)
        if line not in columns:
            if "\0" in line or REPLACEMENT in line:
                utf16 = " (it holds NUL bytes, as UTF-16 text does)" if "\0" in line else ""
                raise SourceError(f"{path}: the header is not {encoding} text{utf16}; re-export the file as "
                                  "UTF-8 or set options.encoding in the source mapping")
            rdd = spark.sparkContext.parallelize([line], 1)
            columns[line] = tuple(spark.read.options(**options).option("header", "true").csv(rdd).columns)
        groups.setdefault(columns[line], []).append(path)
    return groups


def read_strings(spark: SparkSession, files: list[str], fmt: str, options: dict[str, str],
                 wanted: dict[str, str], mapping: str) -> DataFrame:
    """Every source column as a string, plus the malformed line (CSV/JSON) if any.

    The ``wanted`` columns (canonical name -> source column) must be in every file; CSV
    files are read by column name, so their headers may differ in order and in extra
    columns. A missing column, or a file Spark cannot read, raises SourceError naming the
    file (for the latter, with Spark's innermost cause)."""
    try:
        if fmt == "csv":
            frames = []
            for header, paths in csv_headers(spark, files, options).items():
                require_columns(list(header), wanted, paths[0], mapping,
                                options.get("sep", options.get("delimiter", ",")))
                frames.append(_csv(spark, paths, header, options))
            return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)
        df = _parquet_or_json(spark, files, fmt, options)
        require_columns([c for c in df.columns if c != CORRUPT], wanted, files[0], mapping, None)
        return df
    except SourceError:
        raise
    except Exception as err:
        raise SourceError(f"cannot read {files[0]} (and {len(files) - 1} more) as {fmt}: {spark_cause(err)}; "
                          "check the files and the mapping's format and options") from None


def _strings_schema(names: tuple[str, ...] | list[str]) -> StructType:
    return StructType([StructField(c, StringType()) for c in names] + [StructField(CORRUPT, StringType())])


def _csv(spark: SparkSession, files: list[str], header: tuple[str, ...], options: dict[str, str]) -> DataFrame:
    return (spark.read.options(**options).option("recursiveFileLookup", "true")
            .option("header", "true").option("enforceSchema", "false")
            .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
            .schema(_strings_schema(header)).csv(files))


def _parquet_or_json(spark: SparkSession, files: list[str], fmt: str, options: dict[str, str]) -> DataFrame:
    reader = spark.read.options(**options).option("recursiveFileLookup", "true")
    if fmt == "parquet":
        df = reader.parquet(*files)
        return df.select(*[F.col(c).cast("string").alias(c) for c in df.columns],
                         F.lit(None).cast("string").alias(CORRUPT))
    names = [c for c in spark.read.options(**options).json(files[0]).columns if c != CORRUPT]
    return (reader.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
            .schema(_strings_schema(names)).json(files))


def require_columns(found: list[str], wanted: dict[str, str], file: str, mapping: str, sep: str | None) -> None:
    """SourceError naming the file and every mapped column (canonical name -> source column)
    that its columns lack; for CSV (``sep`` given) a hint when the header looks split by
    another delimiter."""
    missing = {name: column for name, column in wanted.items() if column not in found}
    if not missing:
        return
    hint = ""
    others = [d for d in (",", ";", "\t", "|") if sep and d != sep and len(found) == 1 and d in found[0]]
    if others:
        hint = (f"The header is a single column holding {others[0]!r}: is the file {others[0]!r}-separated "
                "(options.sep)? ")
    names = ", ".join(repr(c) for c in missing.values())
    mapped = f" (mapped to {', '.join(missing)})" if list(missing) != list(missing.values()) else ""
    raise SourceError(f"{file}: required column{'s' * (len(missing) > 1)} {names}{mapped} missing; "
                      f"found {shown_header(found, wanted.values())}. {hint}Fix the file or the mapping '{mapping}'")


def spark_cause(err: Exception) -> str:
    """The innermost JVM cause of a Spark error in one line (its message names the file)."""
    java = getattr(err, "java_exception", None)
    if java is None:
        return str(err).strip().splitlines()[0]
    while java.getCause() is not None:
        java = java.getCause()
    return java.toString()


def _source_col(df: DataFrame, spec: ColumnSpec) -> Column:
    col = F.col(f"`{spec.column}`") if spec.column and spec.column in df.columns else F.lit(None).cast("string")
    col = F.nullif(F.trim(col), F.lit(""))   # blank -> null
    return F.coalesce(col, F.lit(spec.default)) if spec.default is not None else col


def _number(text: Column) -> Column:
    return text.try_cast("double")


def parse_date(text: Column, fmt: str) -> Column:
    """``text`` parsed strictly as a date in the Spark pattern ``fmt``, or null. For
    ``yyyy-MM-dd`` (the default): Spark's date cast, kept only where the date prints back as
    ``text``, the same dates as the pattern's parser (signed and 5-digit years included,
    "2024-1-5" or a trailing time not): over 10M CSV rows it adds 1.8 s to the read, the
    parser 4.7 s."""
    if fmt != ISO_DATE:
        return F.try_to_timestamp(text, F.lit(fmt)).cast("date")
    date = text.try_cast("date")
    return F.when(F.date_format(date, ISO_DATE) == text, date)


def canonical(df: DataFrame, mapping: FileMapping, mcc_table=None) -> DataFrame:
    """Map a strings-only frame to the canonical contract with parse errors marked."""
    source_cols = [c for c in df.columns if c != CORRUPT]
    get = {name: _source_col(df, mapping.spec(name)) for name in MAPPED}
    date = parse_date(get["booking_date"], mapping.spec("booking_date").format or ISO_DATE)
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

        category = mcc_class(code, mcc_table, amount)   # credits by direction, not by their code
    else:
        category = code
    raw_row = F.coalesce(F.col(CORRUPT), F.to_json(F.struct(*[F.col(f"`{c}`") for c in source_cols]),
                                                  {"ignoreNullFields": "false"}))
    parse_error = (
        F.when(F.col(CORRUPT).isNotNull(), "MALFORMED_LINE")
        .when(undecodable(*[F.col(f"`{c}`") for c in [CORRUPT, *source_cols]]), "BAD_ENCODING")
        .when(get["booking_date"].isNotNull() & date.isNull(), "UNPARSABLE_DATE")
        .when(get["amount"].isNotNull() & amount.isNull(), "UNPARSABLE_AMOUNT")
        .when(get["balance_after"].isNotNull() & balance.isNull(), "UNPARSABLE_BALANCE")
    )
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
    raise SourceError naming the file. Source columns the mapping does not name are ignored
    (and kept in ``raw_row``); a column it names, without a default, must be in the files."""
    wanted = {name: spec.column for name in MAPPED
              if (spec := mapping.spec(name)).column and spec.default is None}
    return canonical(read_strings(spark, files, mapping.format, mapping.options, wanted, mapping.name),
                     mapping, mcc_table)
