"""The report flow's stages: compare (the comparison variants), evaluate, render."""

from __future__ import annotations

from pyspark.sql import functions as F

from microseg import tracking
from microseg.stages.context import Context, latest_as_of, registered_name, report_dir, run_timed, variant_key
from microseg.stages.model import train_stage
from microseg.stages.score import embed_stage, segment_stage


def compare_stage(ctx: Context) -> dict:
    """Build each variant of ``evaluate.variants`` beside the LSTM, skipping what exists:
    train a comparison encoder (feed-forward) only if none was trained on this sequences
    version (the LSTM is the main flow's: never retrained here); embed and segment only
    if the month has no segments from the variant's champion."""
    seq_name, seq_version = ctx.tables.name("sequences"), ctx.tables.version("sequences")
    as_of, out = latest_as_of(ctx), {}
    tracking.setup(ctx.cfg)
    for variant in ctx.cfg.evaluate.variants:
        sub, ran, version = ctx.for_variant(variant), [], None
        if variant != "traits":
            name = registered_name(sub.cfg)
            if variant != "lstm" and not tracking.trained_on(name, seq_name, seq_version):
                ran.append(run_timed("train", train_stage, sub))
            version = tracking.alias_version(name, sub.cfg.mlflow.alias)
            if version is None:
                raise RuntimeError(f"no {sub.cfg.mlflow.alias} version of {name}; run the train stage "
                                   f"with model.kind={variant} first")
        seg_key = variant_key("segments", variant)
        done = ctx.tables.exists(seg_key) and ctx.tables.read(seg_key).where(
            (F.col("as_of") == F.lit(as_of))
            & (F.lit(version).isNull() | (F.col("model_version") == F.lit(version)))).limit(1).count() > 0
        if not done:
            bodies = {"embed": embed_stage, "segment": segment_stage}
            ran += [run_timed(s, bodies[s], sub) for s in (["segment"] if variant == "traits" else bodies)]
        out[variant] = {"stages_run": len(ran), "model_version": version}
    return {"variants": out}


def evaluate_stage(ctx: Context) -> dict:
    """Segment quality per variant, downstream tasks against bespoke models, the surrogate
    explanation and the paper's claims, on a seeded sample; one MLflow run holds it all."""
    import mlflow

    from microseg.evaluate import evaluation

    as_of = latest_as_of(ctx)
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

    folder = report_dir(ctx, latest_as_of(ctx))
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
