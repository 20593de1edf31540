"""Stages that score customers: embed, segment, assign, summary."""

from __future__ import annotations

import datetime as dt

import numpy as np
from pyspark.sql import functions as F

from microseg import tracking
from microseg.prep import sequences
from microseg.taxonomy import TRAITS
from microseg.stages.context import Context, latest_as_of, registered_name, report_dir, segment_inputs, variant_key


def embed_stage(ctx: Context) -> dict:
    """Embed every customer of gold.sequences with the aliased encoder (broadcast once)."""
    from microseg.score.embed import embed_customers

    tracking.setup(ctx.cfg)
    weights, spec, version = tracking.load_encoder_files(registered_name(ctx.cfg), ctx.cfg.mlflow.alias)
    as_of, key = latest_as_of(ctx), variant_key("embeddings", ctx.cfg.model.kind)
    emb = embed_customers(ctx.tables.read("sequences"), weights, spec["model"], version)
    ctx.tables.replace_where(key, emb, f"as_of = '{as_of}'")
    return {"model_version": version, "as_of": str(as_of), "table": ctx.tables.name(key)}


def segment_stage(ctx: Context) -> dict:
    """Fit micro-segments (k by silhouette unless fixed) and coarse segments above them,
    store the centroids with the model version (Delta + MLflow), assign every customer."""
    import mlflow

    from microseg.score import segment

    cfg = ctx.cfg
    as_of = latest_as_of(ctx)
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

    as_of = latest_as_of(ctx)
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


def summary_stage(ctx: Context) -> dict:
    """Print what was built and where; small by construction (one row per segment)."""
    as_of = latest_as_of(ctx, "segment_profiles")
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
