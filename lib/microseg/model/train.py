"""The training loop: one function body, whatever launches it (``model.launch``).

``train(job, comm)`` runs on every rank. It checkpoints after each epoch (rank 0), resumes
from the last checkpoint when started again, stops early on a stalled validation loss, and
returns the same :class:`TrainResult` on every rank (so any launcher's return is right),
holding the last epoch's weights or, with ``keep="best"``, the lowest validation loss's.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from microseg.model import data, objectives
from microseg.model.comm import LocalComm
from microseg.model.networks import build_model

FAULT_ENV = "MICROSEG_FAULT"   # "rank:step" raises there (fault-injection for tests and the harness)


@dataclass(frozen=True)
class TrainJob:
    """Everything a rank needs; small and picklable (the data travels as loader handles: ``model.loaders``)."""

    train_data: Any
    val_data: Any | None
    spec: dict
    scaling: tuple[list[float], list[float]]
    months: int
    epochs: int
    batch_size: int
    learning_rate: float
    steps: int                      # per epoch and rank
    seed: int
    lr_step_epochs: int | None = None
    lr_gamma: float = 0.5
    patience: int | None = None
    keep: str = "last"              # the weights returned: "last" epoch's or the "best" validation loss's
    checkpoint_dir: str | None = None
    mlflow_run: tuple[str, str] | None = None   # (tracking URI, run id): rank 0 logs each epoch


@dataclass
class TrainResult:
    state_dict: bytes
    spec: dict
    history: list[dict] = field(default_factory=list)
    rank_digests: list[str] = field(default_factory=list)
    resumed_from: int = 0
    seconds: float = 0.0
    rows_seen: int = 0
    kept_epoch: int = 0             # the epoch whose weights state_dict holds

    @property
    def kept(self) -> dict:
        return next((h for h in self.history if h["epoch"] == self.kept_epoch), self.final)

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}

    @property
    def best(self) -> dict:
        scored = [h for h in self.history if "val_loss" in h]
        return min(scored, key=lambda h: h["val_loss"]) if scored else self.final


def evaluate(model: nn.Module, batches, months: int) -> dict:
    """The objective's loss and each part's on ``batches``, weighted by batch size."""
    model.eval()
    sums: dict[str, float] = {}
    rows = 0
    with torch.no_grad():
        for raw in batches:
            batch = data.to_batch(raw, months)
            total, parts = objectives.loss(model, batch)
            n = len(batch.x)
            named = {f"val_loss_{objectives.metric_key(p)}": v for p, v in parts.items()}
            for key, value in {"val_loss": float(total), **named}.items():
                sums[key] = sums.get(key, 0.0) + value * n
            rows += n
    return {k: v / rows for k, v in sums.items()} if rows else {"val_loss": float("nan")}


def state_bytes(model: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def param_digest(model: nn.Module) -> str:
    return state_digest(model.state_dict())


def state_digest(state: dict) -> str:
    """SHA-256 over a state dict's names and tensor bytes: equal only when bit for bit equal."""
    h = hashlib.sha256()
    for name, p in sorted(state.items()):
        h.update(name.encode())
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def _checkpoint_path(job: TrainJob) -> Path | None:
    return Path(job.checkpoint_dir) / "last.pt" if job.checkpoint_dir else None


def _save_checkpoint(path: Path, state: dict) -> None:
    """Write-then-rename, so a kill mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _maybe_fault(rank: int, step: int) -> None:
    spec = os.environ.get(FAULT_ENV)
    if spec and spec == f"{rank}:{step}":
        raise RuntimeError(f"injected fault on rank {rank} at step {step} ({FAULT_ENV}={spec})")


def _log_epoch(job: TrainJob, row: dict) -> None:
    if job.mlflow_run is None:
        return
    from mlflow.tracking import MlflowClient

    uri, run_id = job.mlflow_run
    client = MlflowClient(tracking_uri=uri)
    for key, value in row.items():
        if key != "epoch" and np.isfinite(value):
            client.log_metric(run_id, key, float(value), step=int(row["epoch"]))


def rate_schedule(opt: torch.optim.Optimizer, step_epochs: int | None, gamma: float):
    """StepLR: the rate times ``gamma`` every ``step_epochs`` epochs; None (a constant rate)
    without ``step_epochs``. The pipeline's training and the evaluation's in-memory fits share it."""
    return torch.optim.lr_scheduler.StepLR(opt, step_epochs, gamma) if step_epochs else None


def train(job: TrainJob, comm=None) -> TrainResult:
    """Train on this rank's shard; rank 0 evaluates, logs and checkpoints after each epoch."""
    comm = comm or LocalComm()
    start = time.perf_counter()
    torch.manual_seed(job.seed)
    model = build_model(job.spec)
    model.set_scaling(*job.scaling)
    opt = torch.optim.Adam(model.parameters(), lr=job.learning_rate)
    sched = rate_schedule(opt, job.lr_step_epochs, job.lr_gamma)
    history: list[dict] = []
    best_loss, best_state, best_epoch, stalled, first_epoch = float("inf"), None, 0, 0, 1
    ckpt_path = _checkpoint_path(job)
    if ckpt_path is not None and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if sched is not None:
            sched.load_state_dict(ckpt["scheduler"])
        history, best_loss, best_state, stalled = ckpt["history"], ckpt["best_loss"], ckpt["best_state"], ckpt["stalled"]
        best_epoch = ckpt.get("best_epoch", 0)
        first_epoch = ckpt["epoch"] + 1
    net, opt = comm.wrap(model, opt)
    rows_seen = 0
    for epoch in range(first_epoch, job.epochs + 1):
        if history and history[-1].get("stopped_early"):
            break
        torch.manual_seed(job.seed * 1_000 + epoch)   # dropout etc.: the same whether resumed or not
        net.train()
        loss_sum, rows = 0.0, 0
        batches = job.train_data.training_batches(job.batch_size, job.steps, job.seed + epoch,
                                                  comm.rank, comm.world)
        for step, batch in enumerate(batches):
            _maybe_fault(comm.rank, (epoch - 1) * job.steps + step)
            loss, _ = objectives.loss(model, data.to_batch(batch, job.months), net)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item()
            rows += len(batch["trait_mask"])
        per_rank = comm.gather_objects(rows)
        if min(per_rank) == 0:
            raise RuntimeError(f"epoch {epoch}: a rank read no rows (rows per rank: {per_rank}); "
                               "the training table has fewer row groups than ranks")
        rows_seen += sum(per_rank)
        row = {"epoch": epoch, "train_loss": comm.sum(loss_sum) / (job.steps * comm.world),
               "learning_rate": opt.param_groups[0]["lr"]}
        if comm.rank == 0 and job.val_data is not None:
            row.update(evaluate(model, job.val_data.all_batches(job.batch_size), job.months))
        row = comm.broadcast_object(row)
        val = row.get("val_loss", row["train_loss"])
        if val < best_loss:
            best_loss, best_state, best_epoch, stalled = val, state_bytes(model), epoch, 0
        else:
            stalled += 1
        if job.patience is not None and stalled >= job.patience:
            row["stopped_early"] = 1.0
        history.append(row)
        if sched is not None:
            sched.step()
        if comm.rank == 0:
            _log_epoch(job, row)
            if ckpt_path is not None:
                _save_checkpoint(ckpt_path, {
                    "epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict() if sched else None, "history": history,
                    "best_loss": best_loss, "best_state": best_state, "best_epoch": best_epoch,
                    "stalled": stalled})
    digests = comm.gather_objects(param_digest(model))
    best = job.keep == "best" and best_state is not None
    result = TrainResult(state_dict=best_state if best else state_bytes(model), spec=job.spec, history=history,
                         rank_digests=digests, resumed_from=first_epoch - 1,
                         seconds=time.perf_counter() - start, rows_seen=rows_seen,
                         kept_epoch=best_epoch if best else (history[-1]["epoch"] if history else 0))
    return comm.broadcast_object(result)
