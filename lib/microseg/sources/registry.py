"""Choose the source adapter by config and read one batch: canonical rows + batch id."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from microseg.config import ConfigError, Settings
from microseg.sources import files as file_source
from microseg.taxonomy import Taxonomy


@dataclass(frozen=True)
class Batch:
    rows: DataFrame          # canonical contract (sources.contract.CANONICAL)
    source: str              # recorded on every bronze row; the MERGE key's first half
    batch_id: str            # the same files give the same id
    files: list[str]
    identifying: tuple[str, ...]   # the source columns (keys of raw_row) that hold ids
    format: str              # csv | json | parquet: how the files' records are counted
    header: int = 1          # lines per text file that are no record
    legs: int = 1            # canonical rows per record (statements: 2)

    def expected_rows(self, spark: SparkSession) -> dict[str, int]:
        """Canonical rows each file should give (by ``source_file``), counted apart from
        the adapter's parser (``files.record_counts``)."""
        counts = file_source.record_counts(spark, self.files, self.format, self.header)
        return {f: n * self.legs for f, n in counts.items()}


def batch_id(source: str, files: list[tuple[str, int]]) -> str:
    digest = hashlib.sha256("\n".join(f"{p}\t{n}" for p, n in files).encode()).hexdigest()[:16]
    return f"{source}:{digest}"


def mapping_file(cfg: Settings) -> Path:
    """The source mapping file; ConfigError naming the key when it does not exist."""
    path = cfg.conf_path(cfg.source.mapping)
    if not path.is_file():
        raise ConfigError(f"source.mapping: {path} does not exist; point it at a file in conf/sources/")
    return path


def read_batch(spark: SparkSession, cfg: Settings, taxonomy: Taxonomy) -> Batch:
    path = cfg.data_path(cfg.source.path)
    classes = [c.name for c in taxonomy.classes]
    if cfg.source.adapter == "berka":
        from microseg.sources import berka

        mapping = berka.load_mapping(mapping_file(cfg), classes)
        listed = file_source.list_files(spark, f"{path.rstrip('/')}/{mapping.files.transactions}")
        rows = berka.read_transactions(spark, path, mapping)
        return Batch(rows, "berka", batch_id("berka", listed), [p for p, _ in listed],
                     ("account_id", "trans_id", *mapping.identifying), "csv")
    if cfg.source.adapter == "statements":
        from microseg.sources import statements

        mapping = statements.load_mapping(mapping_file(cfg), classes)
        read = lambda names: statements.read_statements(spark, names, mapping)  # noqa: E731
        identifying, legs = (mapping.columns["customer_id"], *mapping.identifying), 2
    else:   # files, and generator: the synthetic bank's landing, read the same way
        mapping = file_source.load_mapping(mapping_file(cfg))
        mcc_table = None
        if mapping.category_codes == "mcc":
            from microseg.sources.mcc import load_mcc_table

            mcc_table = load_mcc_table(cfg.conf_path("conf/mcc.yaml"), classes)
        read = lambda names: file_source.read_files(spark, names, mapping, mcc_table)  # noqa: E731
        identifying = (mapping.spec("customer_id").column, mapping.spec("txn_id").column, *mapping.identifying)
        legs = 1
    listed = file_source.list_files(spark, path)
    names = file_source.check_files(listed, path, mapping.format)
    return Batch(read(names), mapping.name, batch_id(mapping.name, listed), names, identifying, mapping.format,
                 int(mapping.format == "csv"), legs)


def read_loans(spark: SparkSession, cfg: Settings) -> DataFrame | None:
    """customer_id, loan_default (0/1), loan_date: one row per loan of the source's loan book,
    or None. ``loan_date`` is null when the book has no such column (yyyy-MM-dd) or a value
    does not parse."""
    if cfg.source.adapter == "berka":
        from microseg.sources import berka

        loans = berka.read_loans(spark, cfg.data_path(cfg.source.path), berka.load_files(mapping_file(cfg)))
    elif cfg.source.loans:
        path = cfg.data_path(cfg.source.loans)
        if not file_source.list_files(spark, path):
            return None
        raw = spark.read.option("header", "true").csv(path)
        date = (file_source.parse_date(F.trim("loan_date"), file_source.ISO_DATE)
                if "loan_date" in raw.columns else F.lit(None).cast("date"))
        loans = raw.select(F.trim("customer_id").alias("customer_id"),
                           F.trim("loan_status").alias("loan_status"), date.alias("loan_date"))
    else:
        return None
    is_default = F.col("loan_status").isin(cfg.source.default_statuses).cast("int")
    return loans.select("customer_id", is_default.alias("loan_default"), "loan_date")
