"""What every stage shares: the context (config, Spark, tables, taxonomy) and the names
that stages and the evaluation both use (variant table keys, registered model names,
the encoder spec, the fitted feature scaling)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from microseg import tracking
from microseg.config import Settings
from microseg.prep import personality
from microseg.spark import get_spark
from microseg.tables import Tables
from microseg.taxonomy import Taxonomy, load_taxonomy

log = logging.getLogger("microseg")


@dataclass
class Context:
    cfg: Settings
    spark: SparkSession
    tables: Tables
    taxonomy: Taxonomy

    @classmethod
    def create(cls, cfg: Settings, spark: SparkSession | None = None) -> Context:
        spark = spark or get_spark(cfg)
        return cls(cfg, spark, Tables(spark, cfg), load_taxonomy(cfg.conf_path(cfg.taxonomy)))

    @property
    def work_dir(self) -> Path:
        return self.tables.root / "_work"

    def for_variant(self, variant: str) -> Context:
        """The same session and tables with the config of a feature variant: ``lstm`` or
        ``feedforward`` (that encoder's embeddings) or ``traits`` (raw window-mean traits)."""
        if variant == "traits":
            cfg = self.cfg.with_overrides(**{"segment.features": "traits"})
        else:
            cfg = self.cfg.with_overrides(**{"model.kind": variant, "segment.features": "model"})
        return Context(cfg, self.spark, self.tables, self.taxonomy)


def registered_name(cfg: Settings) -> str:
    """The LSTM is registered under ``mlflow.registered_model``; other kinds get a suffix
    (``_feedforward``: Unity Catalog model names allow no ``-``)."""
    base = cfg.mlflow.registered_model
    return base if cfg.model.kind == "lstm" else f"{base}_{cfg.model.kind}"


def feature_scaling(ctx: Context, seq_version: int) -> tuple[list[float], list[float]]:
    """The features' (means, standard deviations) fitted on ``gold.sequences`` at
    ``seq_version``; one row per feature."""
    stats = (ctx.tables.read("feature_stats").where(F.col("sequences_version") == seq_version)
             .orderBy("index").select("mean", "std").toPandas())
    if stats.empty:
        raise RuntimeError(f"gold.feature_stats was not fitted on {ctx.tables.name('sequences')} "
                           f"version {seq_version}; re-run the sequences stage")
    return stats["mean"].tolist(), stats["std"].tolist()


def sequences_record(ctx: Context, seq_version: int) -> dict:
    """What an encoder must record (``model.compat``) to embed ``gold.sequences`` at
    ``seq_version``: its feature names and taxonomy version (from ``gold.feature_stats``)
    and the objective the config asks of ``model.kind``."""
    from microseg.model import objectives

    stats = ctx.tables.read("feature_stats").where(F.col("sequences_version") == seq_version)
    rows = (stats.orderBy("index").select("feature", "taxonomy_version").collect()
            if "taxonomy_version" in stats.columns else [])      # one row per feature
    if not rows:
        raise RuntimeError(f"gold.feature_stats records no features and taxonomy version for "
                           f"{ctx.tables.name('sequences')} version {seq_version}; re-run the sequences stage")
    spec = encoder_spec(ctx.cfg.model, len(rows), ctx.cfg.sequences.window_months)
    return {"objective": objectives.resolve(spec["objective"]), "feature_names": [r.feature for r in rows],
            "taxonomy_version": rows[0].taxonomy_version}


def encoder_spec(mcfg, n_features: int, months: int, kind: str | None = None) -> dict:
    """The network spec of ``model`` (``kind`` overrides ``model.kind``) for ``n_features``
    inputs over ``months``; the feed-forward encoder learns the window's mean traits (the
    paper's comparison network), the LSTM ``model.objective``."""
    kind = kind or mcfg.kind
    return {"kind": kind, "n_features": n_features, "months": months, "hidden": mcfg.hidden,
            "layers": mcfg.layers, "dropout": mcfg.dropout, "embedding": mcfg.embedding,
            "objective": mcfg.objective if kind == "lstm" else "window_traits"}


def variant_key(key: str, features: str) -> str:
    """The table key for what was embedded or clustered: ``lstm`` (no suffix),
    ``feedforward`` or ``traits``."""
    return key if features == "lstm" else f"{key}@{features}"


def latest_as_of(ctx: Context, key: str = "sequences") -> dt.date:
    return ctx.tables.read(key).agg(F.max("as_of")).head()[0]


def report_dir(ctx: Context, as_of: dt.date) -> Path:
    return ctx.tables.root / "reports" / f"evaluation-{as_of:%Y-%m}"


def run_timed(name: str, body: Callable[[Context], dict], ctx: Context) -> dict:
    """Run one stage body: its Delta commits carry the stage name, its figures the seconds."""
    start = time.perf_counter()
    ctx.tables.commit_note = json.dumps({"stage": name, "code_version": tracking.code_version()})
    out = body(ctx)
    out["seconds"] = round(time.perf_counter() - start, 2)
    log.info("stage %s done in %.1f s: %s", name, out["seconds"], out)
    return out


def segment_inputs(ctx: Context, as_of: dt.date) -> tuple[DataFrame, str, str | None]:
    """(vectors with customer_id, as_of, model_version, embedding), the variant, and the
    registered model the vectors come from (None for raw traits)."""
    cfg = ctx.cfg
    if cfg.segment.features == "traits":
        vectors = personality.window_traits(ctx.tables.read("sequences")).select(
            "customer_id", F.lit(as_of).alias("as_of"),
            F.lit(f"traits@{ctx.taxonomy.version}").alias("model_version"), "embedding")
        # An aggregate's partitions and row order follow shuffle arrival and AQE; sampling and
        # KMeans' start follow both, so fix them.
        vectors = vectors.repartition(cfg.spark.shuffle_partitions, "customer_id").sortWithinPartitions("customer_id")
        return vectors, "traits", None
    key = variant_key("embeddings", cfg.model.kind)
    emb = ctx.tables.read(key).where(F.col("as_of") == F.lit(as_of))
    return emb, cfg.model.kind, registered_name(cfg)
