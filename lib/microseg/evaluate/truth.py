"""Known segments to check the structure claims (ARI) against: the user's own
(``evaluate.known_segments``: a file or table, e.g. segments from a previous system or a
labelled pilot), else the generator's planted ones (``raw.ground_truth``), else none.

Every frame here is Spark; only counts come to the driver.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from microseg.config import ConfigError, KnownSegmentsConfig
from microseg.prep.pseudonymise import Pseudonym, configured_pseudonym, pseudonymise
from microseg.sources.contract import shown_header

KEY = "evaluate.known_segments"
COLUMNS = ["customer_id", "micro_segment", "coarse_group"]
NONE = ("no known segments: the source has no ground truth and evaluate.known_segments is not set "
        "(point it at a file or table of customer_id and segment, e.g. segments from a previous system "
        "or a labelled pilot)")


def known_segments(ctx) -> tuple[DataFrame | None, str]:
    """(customer_id, micro_segment, coarse_group or None, where they came from): the
    configured known segments, else the generator's ground truth, else (None, "none")."""
    cfg = ctx.cfg
    known = cfg.evaluate.known_segments
    if known is not None:
        location = known.table or cfg.data_path(known.path)
        pseudonym = configured_pseudonym(cfg.ingest, ctx.spark)
        return read_known(ctx.spark, known, location, pseudonym), f"{KEY}: {location}"
    if ctx.tables.exists("ground_truth"):
        return ctx.tables.read("ground_truth").select(*COLUMNS), f"generator: {ctx.tables.name('ground_truth')}"
    return None, "none"


def read_known(spark: SparkSession, cfg: KnownSegmentsConfig, location: str,
               pseudonym: Pseudonym | None) -> DataFrame:
    """customer_id, micro_segment, coarse_group (null without ``cfg.coarse``), as strings,
    from ``location`` (a path or a table name); ids on the same pseudonyms as bronze when
    ``pseudonym`` is given. ConfigError naming the key for a missing column, a blank id or
    an id listed twice."""
    if cfg.table is not None:
        raw = spark.read.table(location)
    else:
        reader = spark.read.format(cfg.format)
        if cfg.format == "csv":
            reader = reader.option("header", "true")
        raw = reader.options(**cfg.options).load(location)
    wanted = {"customer_id": cfg.customer_id, "segment": cfg.segment, "coarse": cfg.coarse}
    for key, column in wanted.items():
        if column is not None and column not in raw.columns:
            header = shown_header(raw.columns, [c for c in wanted.values() if c])
            raise ConfigError(f"{KEY}.{key}: no column {column!r} in {location} (its header: {header}); "
                              f"set {KEY}.{key} to the column that holds it")
    coarse = F.col(cfg.coarse).cast("string") if cfg.coarse else F.lit(None).cast("string")
    out = raw.select(F.trim(F.col(cfg.customer_id).cast("string")).alias("customer_id"),
                     F.col(cfg.segment).cast("string").alias("micro_segment"), coarse.alias("coarse_group"))
    out = out.where(F.col("micro_segment").isNotNull())
    counts = out.agg(F.count_if(F.coalesce(F.col("customer_id"), F.lit("")) == "").alias("blank"),
                     (F.count("customer_id") - F.count_distinct("customer_id")).alias("repeated")).head()   # two numbers
    if counts["blank"] or counts["repeated"]:
        raise ConfigError(f"{KEY}: {location} has {counts['blank']} row(s) without a customer id and "
                          f"{counts['repeated']} repeated customer id(s) in column {cfg.customer_id!r}; "
                          "give one row per customer")
    return pseudonymise(out, ["customer_id"], pseudonym) if pseudonym is not None else out
