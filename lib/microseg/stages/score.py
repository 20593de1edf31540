"""Stages that score customers: embed, segment, assign, summary."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import functions as F

from microseg import tracking
from microseg.model import compat
from microseg.prep import sequences
from microseg.taxonomy import TRAITS
from microseg.stages.context import (Context, latest_as_of, registered_name, report_dir, segment_inputs,
                                     sequences_record, variant_key)


def _require_fits(ctx: Context, name: str, version: str, spec: dict) -> int:
    """The sequences version that model ``version`` of ``name`` (recorded ``spec``) may
    embed: it must record that table's objective, feature names and taxonomy version."""
    seq_version = ctx.tables.version("sequences")
    compat.require(spec, sequences_record(ctx, seq_version), f"model {name} version {version}",
                   f"{ctx.tables.name('sequences')} version {seq_version}")
    return seq_version


def embed_stage(ctx: Context) -> dict:
    """Embed every customer of gold.sequences with the aliased encoder (broadcast once), if
    it was trained for the table's features, taxonomy and the configured objective."""
    from microseg.score.embed import embed_customers

    tracking.setup(ctx.cfg)
    name = registered_name(ctx.cfg)
    weights, spec, version = tracking.load_encoder_files(name, ctx.cfg.mlflow.alias)
    seq_version = _require_fits(ctx, name, version, spec)
    as_of, key = latest_as_of(ctx), variant_key("embeddings", ctx.cfg.model.kind)
    emb = embed_customers(ctx.tables.read("sequences", version=seq_version), weights, spec["model"], version)
    ctx.tables.replace_where(key, emb, f"as_of = '{as_of}'", add_columns=True)   # tables from before `state`
    return {"model_version": version, "as_of": str(as_of), "table": ctx.tables.name(key)}


def segment_stage(ctx: Context) -> dict:
    """Fit coarse segments and micro-segments inside each (k by the rules of
    ``microseg.score.segment`` unless fixed), store both levels' centroids with the model
    version (Delta + MLflow), assign every customer, and flag a degenerate segmentation
    (fewer than 2 distinct vectors: one segment, the reason in ``degenerate_reason``)."""
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
        seg = segment.fit(vectors, cfg.segment, cfg.seed)
        for k, sil in seg.coarse_curve.items():
            mlflow.log_metric("silhouette_coarse", sil, step=k)
        for c, curve in seg.micro_curves.items():
            for k, sil in curve.items():
                mlflow.log_metric(f"silhouette_micro_c{c}", sil, step=k)
        mlflow.log_dict({str(k): v for k, v in seg.coarse_curve.items()}, "silhouette_by_coarse_k.json")
        mlflow.log_dict({str(c): {str(k): v for k, v in curve.items()} for c, curve in seg.micro_curves.items()},
                        "silhouette_by_micro_k.json")
        for c, curve in seg.micro_bic.items():
            for k, bic in curve.items():
                mlflow.log_metric(f"bic_micro_c{c}", bic, step=k)
        mlflow.log_params({"segment.coarse_k_chosen": len(seg.coarse), "segment.k_chosen": len(seg.micro),
                           "segment.micro_k_chosen": seg.micro_k,
                           "segment.micro_k_criterion": cfg.segment.micro_k_criterion})
        mlflow.log_dict({"model_version": version, "coarse": seg.coarse.tolist(), "micro": seg.micro.tolist(),
                         "coarse_segment": seg.parent.tolist(), "messages": seg.messages}, "centroids.json")
        if model_name:
            from mlflow.tracking import MlflowClient

            MlflowClient().set_model_version_tag(model_name, version, "segmentation_run", run.info.run_id)
        ctx.tables.replace_where(variant_key("segment_centroids", variant),
                                 segment.centroid_table(ctx.spark, seg, version), f"model_version = '{version}'")
        ctx.tables.replace_where(variant_key("segments", variant), segment.assign(vectors, seg),
                                 f"as_of = '{as_of}'")
        vectors.unpersist()
        flags = segment.degeneracy(_write_profiles(ctx, variant, as_of), cfg.segment, seg.one_point)
        mlflow.log_metrics({"segment.largest_share": flags["largest_share"],
                            "segment.smallest_size": flags["smallest_size"],
                            "segment.degenerate": float(flags["degenerate"])})
        mlflow.set_tags({"segment.degenerate_reason": flags["degenerate_reason"] or "",
                         "segment.one_point": seg.one_point or ""})
    return {"features": variant, "as_of": str(as_of), "model_version": version,
            "coarse_k": len(seg.coarse), "k": len(seg.micro), "micro_k": seg.micro_k,
            "silhouette": seg.coarse_curve.get(len(seg.coarse)),
            "micro_silhouette": {c: seg.micro_curves[c].get(k) for c, k in seg.micro_k.items()},
            **flags, "messages": seg.messages, "segment_run_id": run.info.run_id}


def _write_profiles(ctx: Context, variant: str, as_of: dt.date):
    """Write the segment profiles of ``as_of``; returns their sizes (pandas, one row per segment)."""
    from microseg.score import segment

    key = variant_key("segment_profiles", variant)
    labels = ctx.tables.read("labels") if ctx.tables.exists("labels") else None
    segs = ctx.tables.read(variant_key("segments", variant)).where(F.col("as_of") == F.lit(as_of))
    prof = segment.profiles(segs, ctx.tables.read("personality"), ctx.tables.read("monthly_spend"),
                            labels, list(TRAITS))
    ctx.tables.replace_where(key, prof, f"as_of = '{as_of}'")
    return (ctx.tables.read(key).where(F.col("as_of") == F.lit(as_of))
            .select("segment", "coarse_segment", "customers").toPandas())     # one row per segment


def assign_stage(ctx: Context) -> dict:
    """Monthly: assign every customer to the stored centroids of the champion encoder's
    version (nearest coarse, then nearest micro within it; no refit), profile the segments,
    flag a degenerate month, and count migrations since last month; refuses embeddings of an
    encoder not trained for gold.sequences (as ``embed`` does)."""
    from microseg.score import segment

    as_of = latest_as_of(ctx)
    vectors, variant, model_name = segment_inputs(ctx, as_of)
    version = vectors.select("model_version").head()[0]
    if model_name:
        tracking.setup(ctx.cfg)
        _require_fits(ctx, model_name, version, tracking.encoder_files(model_name, version)[1])
    stored = ctx.tables.read(variant_key("segment_centroids", variant)).where(F.col("model_version") == version)
    rows = stored.collect()             # one row per centroid: small by construction
    if not rows:
        raise RuntimeError(f"no stored centroids for model version {version}; run the segment stage "
                           "once for this model version first")
    seg = segment.stored(rows)
    ctx.tables.replace_where(variant_key("segments", variant), segment.assign(vectors, seg), f"as_of = '{as_of}'")
    flags = segment.degeneracy(_write_profiles(ctx, variant, as_of), ctx.cfg.segment)
    previous = sequences.window_months(as_of, 2)[0]
    segs = ctx.tables.read(variant_key("segments", variant))
    moved = segment.migration(segs.where(F.col("as_of") == F.lit(previous)),
                              segs.where(F.col("as_of") == F.lit(as_of)), previous, as_of)
    ctx.tables.replace_where(variant_key("segment_migration", variant), moved, f"as_of = '{as_of}'")
    return {"as_of": str(as_of), "model_version": version, "coarse_k": len(seg.coarse), "k": len(seg.micro),
            **flags}


def summary_stage(ctx: Context) -> dict:
    """Print what was built and where, and what could not be (no liquidity without
    balances); small by construction (one row per segment)."""
    from microseg.prep.labels import balance_coverage, balance_gap, liquidity_unavailable
    from microseg.score import segment

    as_of = latest_as_of(ctx, "segment_profiles")
    profiles = (ctx.tables.read("segment_profiles").where(F.col("as_of") == F.lit(as_of))
                .orderBy("segment").drop("spend_mix").toPandas())   # one row per segment
    customers = int(profiles["customers"].sum())
    per_coarse = profiles.groupby("coarse_segment")["segment"].nunique()
    flags = segment.degeneracy(profiles, ctx.cfg.segment)
    lines = [
        f"as of: {as_of}",
        f"customers segmented: {customers}",
        f"segments: {len(profiles)} in {len(per_coarse)} coarse segments",
        "segments per coarse segment: " + ", ".join(f"{int(c)}:{int(n)}" for c, n in per_coarse.items()),
        "segment sizes: " + ", ".join(f"{int(r.segment)}:{int(r.customers)}" for r in profiles.itertuples()),
        f"tables: {ctx.tables.root if not ctx.cfg.tables.catalog else ctx.cfg.tables.catalog}",
        f"MLflow UI: mlflow ui --backend-store-uri {tracking.tracking_uri(ctx.cfg)}",
    ]
    if flags["degenerate"]:
        lines.insert(2, f"WARNING: degenerate segmentation: {flags['degenerate_reason']}")
    balances = balance_coverage(ctx.tables.read("monthly_account"))
    gap = balance_gap(*balances)
    if gap:
        lines.insert(2, f"WARNING: liquidity: {gap}")
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
    return {"customers": customers, "segments": len(profiles), "degenerate": flags["degenerate"],
            "customers_without_balances": balances[1], "liquidity_unavailable": liquidity_unavailable(*balances),
            "report": str(report)}
