"""The training loop: one function body, whatever launches it (``model.launch``).

``train(job, comm)`` runs on every rank. It checkpoints after each epoch (rank 0), resumes
from the last checkpoint when started again, stops early on a stalled validation loss, and
returns the same :class:`TrainResult` on every rank (so any launcher's return is right).
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

from microseg.model import data
from microseg.model.comm import LocalComm
from microseg.model.networks import build_model
from microseg.taxonomy import TRAITS

FAULT_ENV = "MICROSEG_FAULT"   # "rank:step" raises there (fault-injection for tests and the harness)


@dataclass(frozen=True)
class TrainJob:
    """Everything a rank needs; small and picklable (the data travels as Petastorm handles)."""

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

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}

    @property
    def best(self) -> dict:
        scored = [h for h in self.history if "val_loss" in h]
        return min(scored, key=lambda h: h["val_loss"]) if scored else self.final


def masked_mse(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the (sequence, month) cells where ``mask`` is 1."""
    se = ((pred - y) ** 2).mean(dim=-1) * mask
    return se.sum() / mask.sum().clamp(min=1.0)


def aligned(model: nn.Module, pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor):
    """(pred, target, mask) as [B, T', 5] / [B, T']: per month for sequence models, the
    window's mean trait scores (over months with a target) for the feed-forward model."""
    if model.sequence_output:
        return pred, y, mask
    weight = mask.unsqueeze(-1)
    target = (y * weight).sum(1) / weight.sum(1).clamp(min=1.0)
    return pred.unsqueeze(1), target.unsqueeze(1), (mask.sum(1) > 0).float().unsqueeze(1)


class R2Accumulator:
    """Streaming R^2 per trait over masked cells (no arrays kept)."""

    def __init__(self, n: int = len(TRAITS)):
        self.count = 0.0
        self.sum_y = np.zeros(n)
        self.sum_y2 = np.zeros(n)
        self.sse = np.zeros(n)

    def add(self, pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> None:
        m = mask.bool()
        p, t = pred[m].double().numpy(), y[m].double().numpy()
        self.count += len(t)
        self.sum_y += t.sum(0)
        self.sum_y2 += (t**2).sum(0)
        self.sse += ((p - t) ** 2).sum(0)

    def r2(self) -> np.ndarray:
        if self.count == 0:
            return np.full(len(self.sse), np.nan)
        sst = self.sum_y2 - self.sum_y**2 / self.count
        return 1.0 - self.sse / np.where(sst > 0, sst, np.nan)


def evaluate(model: nn.Module, batches, months: int) -> dict:
    model.eval()
    acc, loss_sum, cells = R2Accumulator(), 0.0, 0.0
    with torch.no_grad():
        for batch in batches:
            x, y, mask = data.to_tensors(batch, months)
            pred, y, mask = aligned(model, model(x), y, mask)
            n = float(mask.sum())
            loss_sum += float(masked_mse(pred, y, mask)) * n
            cells += n
            acc.add(pred, y, mask)
    out = {"val_loss": loss_sum / cells if cells else float("nan")}
    out.update({f"val_r2_{t}": float(v) for t, v in zip(TRAITS, acc.r2())})
    return out


def state_bytes(model: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def param_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
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


def train(job: TrainJob, comm=None) -> TrainResult:
    """Train on this rank's shard; rank 0 evaluates, logs and checkpoints after each epoch."""
    comm = comm or LocalComm()
    start = time.perf_counter()
    torch.manual_seed(job.seed)
    model = build_model(job.spec)
    model.set_scaling(*job.scaling)
    opt = torch.optim.Adam(model.parameters(), lr=job.learning_rate)
    sched = torch.optim.lr_scheduler.StepLR(opt, job.lr_step_epochs, job.lr_gamma) if job.lr_step_epochs else None
    history: list[dict] = []
    best_loss, best_state, stalled, first_epoch = float("inf"), None, 0, 1
    ckpt_path = _checkpoint_path(job)
    if ckpt_path is not None and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if sched is not None:
            sched.load_state_dict(ckpt["scheduler"])
        history, best_loss, best_state, stalled = ckpt["history"], ckpt["best_loss"], ckpt["best_state"], ckpt["stalled"]
        first_epoch = ckpt["epoch"] + 1
    net, opt = comm.wrap(model, opt)
    rows_seen = 0
    for epoch in range(first_epoch, job.epochs + 1):
        if history and history[-1].get("stopped_early"):
            break
        torch.manual_seed(job.seed * 1_000 + epoch)   # dropout etc.: the same whether resumed or not
        net.train()
        loss_sum, rows = 0.0, 0
        batches = data.training_batches(job.train_data, job.batch_size, job.steps, job.seed + epoch,
                                        comm.rank, comm.world)
        for step, batch in enumerate(batches):
            _maybe_fault(comm.rank, (epoch - 1) * job.steps + step)
            x, y, mask = data.to_tensors(batch, job.months)
            pred, y, mask = aligned(model, net(x), y, mask)
            loss = masked_mse(pred, y, mask)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item()
            rows += len(x)
        per_rank = comm.gather_objects(rows)
        if min(per_rank) == 0:
            raise RuntimeError(f"epoch {epoch}: a rank read no rows (rows per rank: {per_rank}); "
                               "the training table has fewer row groups than ranks")
        rows_seen += sum(per_rank)
        row = {"epoch": epoch, "train_loss": comm.sum(loss_sum) / (job.steps * comm.world),
               "learning_rate": opt.param_groups[0]["lr"]}
        if comm.rank == 0 and job.val_data is not None:
            row.update(evaluate(model, data.all_batches(job.val_data, job.batch_size), job.months))
        row = comm.broadcast_object(row)
        val = row.get("val_loss", row["train_loss"])
        if val < best_loss:
            best_loss, best_state, stalled = val, state_bytes(model), 0
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
                    "best_loss": best_loss, "best_state": best_state, "stalled": stalled})
    digests = comm.gather_objects(param_digest(model))
    result = TrainResult(state_dict=best_state or state_bytes(model), spec=job.spec, history=history,
                         rank_digests=digests, resumed_from=first_epoch - 1,
                         seconds=time.perf_counter() - start, rows_seen=rows_seen)
    return comm.broadcast_object(result)
