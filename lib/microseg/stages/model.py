"""The training stage: the encoder trained distributed, logged and registered in MLflow."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from pyspark.sql import functions as F

from microseg import tracking
from microseg.stages.context import Context, encoder_spec, feature_scaling, registered_name, sequences_record


def scorer(batches: Callable[[], Iterable[dict]], months: int) -> Callable[[bytes, dict], float]:
    """An encoder's (weights, recorded spec) -> its objective's loss on ``batches()``: the
    same validation batches for every encoder."""
    import io

    import torch

    from microseg.model.networks import build_model
    from microseg.model.train import evaluate

    def score(weights: bytes, spec: dict) -> float:
        model = build_model(spec["model"])
        model.load_state_dict(torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True))
        return evaluate(model, batches(), months)["val_loss"]

    return score


def require_learnable(ctx: Context, train_df, means: list[float], record: dict) -> None:
    """NothingToLearn (``prep.learnable``) before any training or registration when the
    training customers' spend falls in fewer than 2 classes or, for an objective with trait
    parts, their personality does not vary: from ``gold.feature_stats`` and one aggregate."""
    from microseg.prep import learnable

    spending = learnable.classes_with_spend(record["feature_names"], means)
    variance = (learnable.trait_variance(train_df)
                if len(spending) > 1 and learnable.uses_traits(record["objective"]) else None)
    learnable.check(spending, variance, ctx.cfg.source.adapter)


def train_stage(ctx: Context) -> dict:
    """Train on the recorded sequences version with the configured launcher; log, register,
    and move the alias when the new version beats the holder on the current validation split
    (``tracking.promote_if_better``: encoders trained for something else are not compared).
    Constant training targets stop it first (``require_learnable``)."""
    import shutil

    import mlflow

    from microseg.model import data
    from microseg.model.launch import ranks, run_training
    from microseg.model.loaders import training_data
    from microseg.model.train import TrainJob

    cfg, mcfg = ctx.cfg, ctx.cfg.model
    seq_version = ctx.tables.version("sequences")
    seqs = ctx.tables.read("sequences", version=seq_version).where("eligible")
    scaling, record = feature_scaling(ctx, seq_version), sequences_record(ctx, seq_version)
    months = cfg.sequences.window_months
    train_df = seqs.where(F.col("split") == "train")
    n_train = train_df.count()
    if n_train == 0:
        raise RuntimeError("no eligible training sequences; generate or ingest more data, "
                           "or lower sequences.min_months")
    require_learnable(ctx, train_df, scaling[0], record)
    world = 1 if cfg.train.launcher == "single" else ranks(cfg.train, ctx.spark)
    steps = mcfg.steps_per_epoch or data.steps_per_epoch(n_train, mcfg.batch_size, world)
    parts = max(cfg.spark.shuffle_partitions, world)
    spec = encoder_spec(mcfg, len(scaling[0]), cfg.sequences.window_months)
    run_key = hashlib.sha256(json.dumps([mcfg.model_dump(), world, seq_version, cfg.seed]).encode()
                             ).hexdigest()[:16]
    checkpoints = Path(cfg.data_path(cfg.train.checkpoint_dir)) / run_key

    tracking.setup(cfg)
    with (training_data(cfg.train.loader, train_df, seqs.where(F.col("split") == "validation"),
                        ctx.work_dir, "sequences", seq_version, parts) as (train_data, val_data),
          mlflow.start_run(run_name=f"train-{mcfg.kind}-{cfg.train.launcher}") as run):
        tracking.log_run_context(cfg, ctx.tables.versions(["sequences", "feature_stats"]))
        mlflow.log_params({"train.rows": n_train, "train.steps_per_epoch": steps, "train.world": world,
                           "train.loader": cfg.train.loader, "taxonomy.version": record["taxonomy_version"]})
        job = TrainJob(
            train_data=train_data, val_data=val_data, spec=spec,
            scaling=scaling, months=months,
            epochs=mcfg.epochs, batch_size=mcfg.batch_size, learning_rate=mcfg.learning_rate,
            steps=steps, seed=cfg.seed, lr_step_epochs=mcfg.lr_step_epochs, lr_gamma=mcfg.lr_gamma,
            patience=mcfg.patience, keep=mcfg.keep, checkpoint_dir=str(checkpoints),
            mlflow_run=(tracking.tracking_uri(cfg), run.info.run_id))
        result = run_training(job, cfg.train.model_copy(update={"num_processes": world}))
        mlflow.log_metrics({"train.seconds": result.seconds, "train.resumed_from_epoch": result.resumed_from,
                            "train.seq_per_s": result.rows_seen / max(result.seconds, 1e-9),
                            "train.ranks_in_sync": float(len(set(result.rank_digests)) == 1),
                            "best_val_loss": result.best.get("val_loss", result.best["train_loss"]),
                            "kept_val_loss": result.kept.get("val_loss", result.kept["train_loss"]),
                            "kept_epoch": result.kept_epoch})
        model_spec = {"model": spec, "months": months, **record}
        example = [0.0] * (months * len(scaling[0]))
        name = registered_name(cfg)
        version = tracking.log_encoder(result.state_dict, model_spec, example, name)
        validation = scorer(lambda: val_data.all_batches(mcfg.batch_size), months)
        promotion = tracking.promote_if_better(name, cfg.mlflow.alias, version, validation)
        tracking.record_promotion(name, version, promotion)
    shutil.rmtree(checkpoints, ignore_errors=True)   # finished: a new run trains afresh
    kept = {k: round(v, 5) for k, v in result.kept.items() if k not in ("epoch", "learning_rate")}
    return {"run_id": run.info.run_id, "model": name, "model_version": version,
            "promoted": promotion.promoted, "promotion": promotion.outcome,
            "epochs": len(result.history), "resumed_from_epoch": result.resumed_from,
            "ranks_in_sync": len(set(result.rank_digests)) == 1, "kept_epoch": result.kept_epoch, **kept}
