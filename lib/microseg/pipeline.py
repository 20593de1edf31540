"""The stage registry: jobs/, the CLI and the notebooks all run stages through here.

Each stage reads its input tables, calls pure DataFrame functions from ``prep``/``model``/
``score``, writes its output tables, and returns a small dict of figures. Every stage can
be re-run: outputs are replaced atomically (Delta overwrite) or merged on keys.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from microseg import tracking
from microseg.config import Settings
from microseg.prep import aggregate, personality, sequences
from microseg.prep.ingest import check, split
from microseg.prep.pseudonymise import pseudonym_key, pseudonymise
from microseg.spark import get_spark
from microseg.tables import Tables
from microseg.taxonomy import TRAITS, Taxonomy, load_taxonomy

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


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Context], dict]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    doc: str


def generate_stage(ctx: Context) -> dict:
    from microseg.sources import generator

    cfg = ctx.cfg.generator
    tx, truth = generator.generate(ctx.spark, cfg, ctx.cfg.seed, ctx.taxonomy)
    ctx.tables.overwrite("ground_truth", truth)
    truth = ctx.tables.read("ground_truth")
    landing = ctx.cfg.data_path(cfg.landing)
    generator.write_landing(tx, generator.loan_book(truth, ctx.cfg.seed), landing, cfg.bad_rows, ctx.cfg.seed)
    return {"customers": cfg.customers, "landing": landing}


def ingest_stage(ctx: Context) -> dict:
    """Read the configured source, MERGE valid rows into bronze, quarantine the rest.

    Accounting: every row read is counted once, as valid or under its quarantine reason
    (so rows read = valid + quarantined by construction, from one pass over the checked
    rows); of the valid rows, those whose (source, txn_id) bronze already holds are counted
    as already present, not re-inserted. The batch's quarantine rows replace any from an
    earlier run of the same batch.
    """
    from microseg.sources.registry import read_batch

    rules = ctx.cfg.ingest
    batch = read_batch(ctx.spark, ctx.cfg, ctx.taxonomy)
    today = dt.date.fromisoformat(rules.today) if rules.today else dt.date.today()
    ctx.tables.commit_note = json.dumps({"stage": "ingest", "batch_id": batch.batch_id,
                                         "code_version": tracking.code_version()})
    classes = [c.name for c in ctx.taxonomy.classes]
    rows = batch.rows
    if rules.pseudonymise:
        rows = pseudonymise(rows, "customer_id", pseudonym_key(rules, ctx.spark))
    checked = check(rows, rules, classes, today).persist()   # read and checked once
    counts = {r["_reason"]: r["count"] for r in checked.groupBy("_reason").count().collect()}  # <= 17 rows
    valid = counts.pop(None, 0)
    reasons, quarantined = counts, sum(counts.values())
    read = valid + quarantined
    good, bad = split(checked, batch.source, batch.batch_id, rules, classes)
    inserted = ctx.tables.merge_new("transactions", good, ["source", "txn_id"])
    ctx.tables.replace_where("quarantine", bad, f"batch_id = '{batch.batch_id}'")
    checked.unpersist()
    landed = ctx.tables.read("quarantine").where(F.col("batch_id") == batch.batch_id).count()
    if landed != quarantined or inserted > valid:
        raise RuntimeError(f"ingest of batch {batch.batch_id} does not add up: {quarantined} rows to "
                           f"quarantine but {landed} landed; {inserted} inserted of {valid} valid")
    return {"batch_id": batch.batch_id, "files": len(batch.files), "rows_read": read,
            "rows_valid": valid, "rows_quarantined": quarantined, "rows_inserted": inserted,
            "rows_already_present": valid - inserted, "quarantine_reasons": reasons}


def aggregate_stage(ctx: Context) -> dict:
    tx = ctx.tables.read("transactions")
    kinds = aggregate.class_kinds(ctx.spark, ctx.taxonomy)
    ctx.tables.overwrite("monthly_spend", aggregate.monthly_spend(tx, kinds))
    ctx.tables.overwrite("monthly_account", aggregate.monthly_account(tx))
    return {"monthly_spend_version": ctx.tables.version("monthly_spend")}


def labels_stage(ctx: Context) -> dict:
    from microseg.prep.labels import customer_labels
    from microseg.sources.registry import read_loans

    loans = read_loans(ctx.spark, ctx.cfg)
    if loans is not None and ctx.cfg.ingest.pseudonymise:   # join on the same pseudonyms as bronze
        loans = pseudonymise(loans, "customer_id", pseudonym_key(ctx.cfg.ingest, ctx.spark))
    out = customer_labels(ctx.tables.read("monthly_account"), loans, ctx.cfg.labels.liquidity_classes)
    ctx.tables.overwrite("labels", out)
    return {"labels_version": ctx.tables.version("labels"), "has_loans": loans is not None}


def personality_stage(ctx: Context) -> dict:
    coefs = personality.coefficients(ctx.spark, ctx.taxonomy)
    out = personality.spending_personality(ctx.tables.read("monthly_spend"), coefs)
    ctx.tables.overwrite("personality", out)
    return {"personality_version": ctx.tables.version("personality")}


def sequences_stage(ctx: Context) -> dict:
    cfg = ctx.cfg.sequences
    account = ctx.tables.read("monthly_account")
    as_of = (sequences.parse_month(cfg.as_of) if cfg.as_of else sequences.latest_month(account))
    months = sequences.window_months(as_of, cfg.window_months)
    classes = ctx.taxonomy.spend_classes
    per_month = sequences.monthly_features(
        ctx.spark, ctx.tables.read("monthly_spend"), account, ctx.tables.read("personality"),
        classes, months, cfg.target).persist()
    seqs = sequences.build_sequences(per_month, cfg, ctx.cfg.seed, as_of)
    version = ctx.tables.overwrite("sequences", seqs)
    stats = sequences.feature_stats(per_month, ctx.tables.read("sequences", version=version),
                                    sequences.feature_names(classes))
    ctx.tables.overwrite("feature_stats", stats.withColumn("sequences_version", F.lit(version)))
    per_month.unpersist()
    return {"as_of": str(as_of), "sequences_version": ctx.tables.version("sequences")}


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


def encoder_spec(mcfg, n_features: int, kind: str | None = None) -> dict:
    """The network spec of ``model`` (``kind`` overrides ``model.kind``) for ``n_features`` inputs."""
    return {"kind": kind or mcfg.kind, "n_features": n_features, "hidden": mcfg.hidden, "layers": mcfg.layers,
            "dropout": mcfg.dropout, "n_targets": len(TRAITS), "embed_cell": mcfg.embed_cell}


def train_stage(ctx: Context) -> dict:
    """Train on the recorded sequences version with the configured launcher; log, register,
    and move the alias when the validation loss beats the current holder's."""
    import shutil

    import mlflow

    from microseg.model import data
    from microseg.model.launch import run_training
    from microseg.model.train import TrainJob

    cfg, mcfg = ctx.cfg, ctx.cfg.model
    seq_version = ctx.tables.version("sequences")
    seqs = ctx.tables.read("sequences", version=seq_version).where("eligible")
    scaling = feature_scaling(ctx, seq_version)
    months = cfg.sequences.window_months
    train_df = seqs.where(F.col("split") == "train")
    n_train = train_df.count()
    if n_train == 0:
        raise RuntimeError("no eligible training sequences; generate or ingest more data, "
                           "or lower sequences.min_months")
    world = 1 if cfg.train.launcher == "single" else cfg.train.num_processes
    steps = mcfg.steps_per_epoch or data.steps_per_epoch(n_train, mcfg.batch_size, world)
    cache = ctx.work_dir / "petastorm"
    parts = max(cfg.spark.shuffle_partitions, world)
    train_conv = data.make_converter(train_df, cache, parts)
    val_conv = data.make_converter(seqs.where(F.col("split") == "validation"), cache, parts)
    spec = encoder_spec(mcfg, len(scaling[0]))
    run_key = hashlib.sha256(json.dumps([mcfg.model_dump(), world, seq_version, cfg.seed,
                                         cfg.sequences.target]).encode()).hexdigest()[:16]
    checkpoints = Path(cfg.data_path(cfg.train.checkpoint_dir)) / run_key

    tracking.setup(cfg)
    with mlflow.start_run(run_name=f"train-{mcfg.kind}-{cfg.train.launcher}") as run:
        tracking.log_run_context(cfg, ctx.tables.versions(["sequences", "feature_stats"]))
        mlflow.log_params({"train.rows": n_train, "train.steps_per_epoch": steps, "train.world": world,
                           "taxonomy.version": ctx.taxonomy.version})
        job = TrainJob(
            train_data=train_conv, val_data=val_conv, spec=spec,
            scaling=scaling, months=months,
            epochs=mcfg.epochs, batch_size=mcfg.batch_size, learning_rate=mcfg.learning_rate,
            steps=steps, seed=cfg.seed, lr_step_epochs=mcfg.lr_step_epochs, lr_gamma=mcfg.lr_gamma,
            patience=mcfg.patience, checkpoint_dir=str(checkpoints),
            mlflow_run=(tracking.tracking_uri(cfg), run.info.run_id))
        result = run_training(job, cfg.train)
        mlflow.log_metrics({"train.seconds": result.seconds, "train.resumed_from_epoch": result.resumed_from,
                            "train.seq_per_s": result.rows_seen / max(result.seconds, 1e-9),
                            "train.ranks_in_sync": float(len(set(result.rank_digests)) == 1),
                            "best_val_loss": result.best.get("val_loss", result.best["train_loss"])})
        model_spec = {"model": spec, "months": months, "taxonomy_version": ctx.taxonomy.version,
                      "feature_names": sequences.feature_names(ctx.taxonomy.spend_classes),
                      "target": cfg.sequences.target}
        example = [0.0] * (months * len(scaling[0]))
        name = registered_name(cfg)
        version = tracking.log_encoder(result.state_dict, model_spec, example, name)
        promoted = tracking.promote_if_better(name, cfg.mlflow.alias, version, metric="best_val_loss")
    train_conv.delete()
    val_conv.delete()
    shutil.rmtree(checkpoints, ignore_errors=True)   # finished: a new run trains afresh
    best = {k: round(v, 5) for k, v in result.best.items() if k not in ("epoch", "learning_rate")}
    return {"run_id": run.info.run_id, "model": name, "model_version": version, "promoted": promoted,
            "epochs": len(result.history), "resumed_from_epoch": result.resumed_from,
            "ranks_in_sync": len(set(result.rank_digests)) == 1, **best}


def variant_key(key: str, features: str) -> str:
    """The table key for what was embedded or clustered: ``lstm`` (no suffix),
    ``feedforward`` or ``traits``."""
    return key if features == "lstm" else f"{key}@{features}"


def _as_of(ctx: Context, key: str = "sequences") -> dt.date:
    return ctx.tables.read(key).agg(F.max("as_of")).head()[0]


def embed_stage(ctx: Context) -> dict:
    """Embed every customer of gold.sequences with the aliased encoder (broadcast once)."""
    from microseg.score.embed import embed_customers

    tracking.setup(ctx.cfg)
    weights, spec, version = tracking.load_encoder_files(registered_name(ctx.cfg), ctx.cfg.mlflow.alias)
    as_of, key = _as_of(ctx), variant_key("embeddings", ctx.cfg.model.kind)
    emb = embed_customers(ctx.tables.read("sequences"), weights, spec["model"], version)
    ctx.tables.replace_where(key, emb, f"as_of = '{as_of}'")
    return {"model_version": version, "as_of": str(as_of), "table": ctx.tables.name(key)}


def segment_inputs(ctx: Context, as_of: dt.date) -> tuple[DataFrame, str, str | None]:
    """(vectors with customer_id, as_of, model_version, embedding), the variant, and the
    registered model the vectors come from (None for raw traits)."""
    cfg = ctx.cfg
    if cfg.segment.features == "traits":
        months = sequences.window_months(as_of, cfg.sequences.window_months)
        vectors = personality.window_traits(ctx.tables.read("personality"), months).select(
            "customer_id", F.lit(as_of).alias("as_of"),
            F.lit(f"traits@{ctx.taxonomy.version}").alias("model_version"), "embedding")
        # An aggregate's partitions and row order follow shuffle arrival and AQE; sampling and
        # KMeans' start follow both, so fix them.
        vectors = vectors.repartition(cfg.spark.shuffle_partitions, "customer_id").sortWithinPartitions("customer_id")
        return vectors, "traits", None
    key = variant_key("embeddings", cfg.model.kind)
    emb = ctx.tables.read(key).where(F.col("as_of") == F.lit(as_of))
    return emb, cfg.model.kind, registered_name(cfg)


def segment_stage(ctx: Context) -> dict:
    """Fit micro-segments (k by silhouette unless fixed) and coarse segments above them,
    store the centroids with the model version (Delta + MLflow), assign every customer."""
    import mlflow

    from microseg.score import segment

    cfg = ctx.cfg
    as_of = _as_of(ctx)
    vectors, variant, model_name = segment_inputs(ctx, as_of)
    vectors = vectors.persist()
    version = vectors.select("model_version").head()[0]
    tracking.setup(cfg)
    with mlflow.start_run(run_name=f"segment-{variant}") as run:
        mlflow.set_tags({"features": variant, "model_version": version, "as_of": str(as_of),
                         "code_version": tracking.code_version()})
        tracking.log_run_context(cfg, ctx.tables.versions(["sequences", variant_key("embeddings", variant),
                                                           "personality"]))
        if cfg.segment.k:
            k, curve = cfg.segment.k, {}
        else:
            k, curve = segment.choose_k(vectors, cfg.segment, cfg.seed)
            for kk, sil in curve.items():
                mlflow.log_metric("silhouette", sil, step=kk)
            mlflow.log_dict({str(kk): v for kk, v in curve.items()}, "silhouette_by_k.json")
        mlflow.log_param("segment.k_chosen", k)
        centroids = segment.fit_centroids(vectors, cfg.segment, cfg.seed, k)
        coarse = segment.coarse_labels(centroids, cfg.segment.coarse_k)
        table = segment.centroid_table(ctx.spark, centroids, coarse, version)
        mlflow.log_dict({"model_version": version, "centroids": centroids.tolist(),
                         "coarse_segment": coarse.tolist()}, "centroids.json")
        if model_name:
            from mlflow.tracking import MlflowClient

            MlflowClient().set_model_version_tag(model_name, version, "segmentation_run", run.info.run_id)
    ctx.tables.replace_where(variant_key("segment_centroids", variant), table, f"model_version = '{version}'")
    segments = segment.assign(vectors, centroids, coarse)
    ctx.tables.replace_where(variant_key("segments", variant), segments, f"as_of = '{as_of}'")
    vectors.unpersist()
    _write_profiles(ctx, variant, as_of)
    return {"features": variant, "k": k, "coarse_k": int(len(set(coarse.tolist()))), "as_of": str(as_of),
            "silhouette": curve.get(k), "model_version": version, "segment_run_id": run.info.run_id}


def _write_profiles(ctx: Context, variant: str, as_of: dt.date) -> None:
    from microseg.score import segment

    labels = ctx.tables.read("labels") if ctx.tables.exists("labels") else None
    segs = ctx.tables.read(variant_key("segments", variant)).where(F.col("as_of") == F.lit(as_of))
    prof = segment.profiles(segs, ctx.tables.read("personality"), ctx.tables.read("monthly_spend"),
                            labels, list(TRAITS))
    ctx.tables.replace_where(variant_key("segment_profiles", variant), prof, f"as_of = '{as_of}'")


def assign_stage(ctx: Context) -> dict:
    """Monthly: assign every customer to the stored centroids of the champion encoder's
    version (no refit), profile the segments, and count migrations since last month."""
    from microseg.score import segment

    as_of = _as_of(ctx)
    vectors, variant, _ = segment_inputs(ctx, as_of)
    version = vectors.select("model_version").head()[0]
    stored = ctx.tables.read(variant_key("segment_centroids", variant)).where(F.col("model_version") == version)
    rows = stored.orderBy("segment").collect()             # k rows: small by construction
    if not rows:
        raise RuntimeError(f"no stored centroids for model version {version}; run the segment stage "
                           "once for this model version first")
    centroids = np.array([r.centroid for r in rows])
    coarse = np.array([r.coarse_segment for r in rows])
    ctx.tables.replace_where(variant_key("segments", variant), segment.assign(vectors, centroids, coarse),
                             f"as_of = '{as_of}'")
    _write_profiles(ctx, variant, as_of)
    previous = sequences.window_months(as_of, 2)[0]
    segs = ctx.tables.read(variant_key("segments", variant))
    moved = segment.migration(segs.where(F.col("as_of") == F.lit(previous)),
                              segs.where(F.col("as_of") == F.lit(as_of)), previous, as_of)
    ctx.tables.replace_where(variant_key("segment_migration", variant), moved, f"as_of = '{as_of}'")
    return {"as_of": str(as_of), "model_version": version, "k": len(rows)}


def compare_stage(ctx: Context) -> dict:
    """Build each variant of ``evaluate.variants`` beside the LSTM, skipping what exists:
    train a comparison encoder (feed-forward) only if none was trained on this sequences
    version (the LSTM is the main flow's: never retrained here); embed and segment only
    if the month has no segments from the variant's champion."""
    seq_name, seq_version = ctx.tables.name("sequences"), ctx.tables.version("sequences")
    as_of, out = _as_of(ctx), {}
    tracking.setup(ctx.cfg)
    for variant in ctx.cfg.evaluate.variants:
        sub, ran, version = ctx.for_variant(variant), [], None
        if variant != "traits":
            name = registered_name(sub.cfg)
            if variant != "lstm" and not tracking.trained_on(name, seq_name, seq_version):
                ran.append(run_stage("train", sub))
            version = tracking.alias_version(name, sub.cfg.mlflow.alias)
            if version is None:
                raise RuntimeError(f"no {sub.cfg.mlflow.alias} version of {name}; run the train stage "
                                   f"with model.kind={variant} first")
        seg_key = variant_key("segments", variant)
        done = ctx.tables.exists(seg_key) and ctx.tables.read(seg_key).where(
            (F.col("as_of") == F.lit(as_of))
            & (F.lit(version).isNull() | (F.col("model_version") == F.lit(version)))).limit(1).count() > 0
        if not done:
            ran += [run_stage(s, sub) for s in (["segment"] if variant == "traits" else ["embed", "segment"])]
        out[variant] = {"stages_run": len(ran), "model_version": version}
    return {"variants": out}


def report_dir(ctx: Context, as_of: dt.date) -> Path:
    return ctx.tables.root / "reports" / f"evaluation-{as_of:%Y-%m}"


def evaluate_stage(ctx: Context) -> dict:
    """Segment quality per variant, downstream tasks against bespoke models, the surrogate
    explanation and the paper's claims, on a seeded sample; one MLflow run holds it all."""
    import mlflow

    from microseg.evaluate import evaluation

    as_of = _as_of(ctx)
    tracking.setup(ctx.cfg)
    with mlflow.start_run(run_name="evaluate") as run:
        ev = evaluation.evaluate(ctx, as_of)
        ev.meta["run_id"] = run.info.run_id
        tracking.log_run_context(ctx.cfg, ev.meta["table_versions"])
        mlflow.log_metrics(evaluation.flat_metrics(ev))
        path = report_dir(ctx, as_of) / "evaluation.json"
        evaluation.save(ev, path)
        mlflow.log_artifact(str(path))
    held = ev.claims["held"].tolist()
    return {"as_of": str(as_of), "run_id": run.info.run_id, "customers": ev.meta["customers_in_sample"],
            "claims_held": sum(h is True for h in held), "claims_checked": sum(h is not None for h in held),
            "evaluation": str(path)}


def render_stage(ctx: Context) -> dict:
    """Render the evaluation of the latest month as one self-contained HTML page with its
    figures and metrics, and log them to the evaluation's MLflow run."""
    import mlflow

    from microseg.evaluate import evaluation
    from microseg.report.html import write_report

    folder = report_dir(ctx, _as_of(ctx))
    if not (folder / "evaluation.json").is_file():
        raise FileNotFoundError(f"no evaluation in {folder}; run the evaluate stage first "
                                "(`microseg report` runs compare, evaluate and render)")
    ev = evaluation.load(folder / "evaluation.json")
    paths = write_report(ev, folder)
    tracking.setup(ctx.cfg)
    with mlflow.start_run(run_id=ev.meta["run_id"]):
        mlflow.log_artifacts(str(folder), "report")
        mlflow.set_tag("report", str(paths["report.html"]))
    print(f"report: {paths['report.html']}")
    return {"report": str(paths["report.html"]), "run_id": ev.meta["run_id"]}


def summary_stage(ctx: Context) -> dict:
    """Print what was built and where; small by construction (one row per segment)."""
    as_of = _as_of(ctx, "segment_profiles")
    profiles = (ctx.tables.read("segment_profiles").where(F.col("as_of") == F.lit(as_of))
                .orderBy("segment").drop("spend_mix").toPandas())   # one row per segment
    customers = int(profiles["customers"].sum())
    lines = [
        f"as of: {as_of}",
        f"customers segmented: {customers}",
        f"segments: {len(profiles)} in {profiles['coarse_segment'].nunique()} coarse segments",
        "segment sizes: " + ", ".join(f"{int(r.segment)}:{int(r.customers)}" for r in profiles.itertuples()),
        f"tables: {ctx.tables.root if not ctx.cfg.tables.catalog else ctx.cfg.tables.catalog}",
        f"MLflow UI: mlflow ui --backend-store-uri {tracking.tracking_uri(ctx.cfg)}",
    ]
    evaluation = report_dir(ctx, as_of) / "report.html"
    lines.append(f"evaluation report: {evaluation}" if evaluation.is_file()
                 else "evaluation report: not built yet (`microseg report` or `make report`)")
    report = ctx.tables.root / "reports" / "summary.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    table = profiles.round(3).to_string(index=False)
    report.write_text("# microseg summary\n\n" + "\n".join(f"- {line}" for line in lines)
                      + "\n\n```\n" + table + "\n```\n")
    lines.append(f"report: {report}")
    print("\n".join(lines))
    return {"customers": customers, "segments": len(profiles), "report": str(report)}


STAGES: dict[str, Stage] = {
    s.name: s
    for s in [
        Stage("generate", generate_stage, (), ("ground_truth",),
              "synthetic bank: landing files, loan book, planted ground truth"),
        Stage("ingest", ingest_stage, (), ("transactions", "quarantine"),
              "read the source, validate into bronze; quarantine the rest"),
        Stage("aggregate", aggregate_stage, ("transactions",), ("monthly_spend", "monthly_account"),
              "monthly spend per class and account totals"),
        Stage("labels", labels_stage, ("monthly_account",), ("labels",),
              "loan default and liquidity index per customer"),
        Stage("personality", personality_stage, ("monthly_spend",), ("personality",),
              "spending personality per customer-month"),
        Stage("sequences", sequences_stage, ("monthly_spend", "monthly_account", "personality"),
              ("sequences", "feature_stats"), "per-customer monthly sequences"),
        Stage("train", train_stage, ("sequences", "feature_stats"), (),
              "train the LSTM, log and register it in MLflow"),
        Stage("embed", embed_stage, ("sequences",), ("embeddings",),
              "embed every customer with the champion encoder"),
        Stage("segment", segment_stage, ("embeddings", "personality"),
              ("segment_centroids", "segments", "segment_profiles"),
              "fit micro and coarse segments, store centroids, assign everyone"),
        Stage("assign", assign_stage, ("embeddings", "segment_centroids"),
              ("segments", "segment_profiles", "segment_migration"),
              "monthly: assign to stored centroids, profile, count migrations"),
        Stage("summary", summary_stage, ("segment_profiles",), (), "print what was built"),
        Stage("compare", compare_stage, ("sequences", "personality"), ("embeddings", "segments"),
              "the comparison variants: feed-forward encoder and raw traits, segmented"),
        Stage("evaluate", evaluate_stage, ("segments", "labels", "sequences"), (),
              "segment quality, downstream tasks vs bespoke models, explanation, claims"),
        Stage("render", render_stage, (), (), "the evaluation as one HTML page, logged to MLflow"),
    ]
}


def run_stage(name: str, ctx: Context) -> dict:
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGES)} or 'all'")
    start = time.perf_counter()
    ctx.tables.commit_note = json.dumps({"stage": name, "code_version": tracking.code_version()})
    out = STAGES[name].run(ctx)
    out["seconds"] = round(time.perf_counter() - start, 2)
    log.info("stage %s done in %.1f s: %s", name, out["seconds"], out)
    return out


def table_status(ctx: Context) -> list[dict]:
    """Every configured table: exists, current version, when and how it was last written."""
    out = []
    for key in ctx.cfg.tables.names:
        row = {"table": ctx.tables.name(key), "exists": ctx.tables.exists(key)}
        if row["exists"]:
            last = ctx.tables.history(key).head()           # the newest commit only
            row.update(version=int(last["version"]), timestamp=str(last["timestamp"]),
                       operation=last["operation"])
        out.append(row)
    return out


FLOWS = {
    "all": ["generate", "ingest", "aggregate", "labels", "personality", "sequences", "train", "embed",
            "segment", "summary"],
    # a new month: its files in, sequences up to it, embed and assign with the champion
    # encoder and the stored centroids (no retraining, no refit), migrations counted
    "monthly": ["ingest", "aggregate", "labels", "personality", "sequences", "embed", "assign", "summary"],
    # the evaluation of what `all` built: comparison variants, metrics, the HTML report
    "report": ["compare", "evaluate", "render"],
}


def flow_stages(cfg: Settings, flow: str) -> list[str]:
    """The stages ``flow`` runs, in order: for ``all`` the config's ``stages`` when set."""
    names = cfg.stages if flow == "all" and cfg.stages else FLOWS[flow]
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise KeyError(f"config key stages: unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
    return names


def run_all(ctx: Context, on_stage: Callable[[str, dict], None] | None = None,
            flow: str = "all") -> dict[str, dict]:
    """The stages of ``flow`` in order; for ``all``, the config's ``stages`` list when set
    (e.g. no ``generate`` for a real source)."""
    results = {}
    for name in flow_stages(ctx.cfg, flow):
        results[name] = run_stage(name, ctx)
        if on_stage:
            on_stage(name, results[name])
    return results
