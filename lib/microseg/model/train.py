"""The training loop: one function body, whatever launches it.

``train`` runs on one rank; with ``world > 1`` it expects torch.distributed to be set up
by its launcher and wraps the model in DDP. It returns plain Python values (state_dict
bytes and metrics) so that any launcher can carry them back to the driver.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from microseg.model import data
from microseg.model.networks import build_model
from microseg.taxonomy import TRAITS


@dataclass
class TrainResult:
    state_dict: bytes
    spec: dict
    history: list[dict] = field(default_factory=list)

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


def masked_mse(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the (sequence, month) cells where ``mask`` is 1."""
    se = ((pred - y) ** 2).mean(dim=-1) * mask
    return se.sum() / mask.sum().clamp(min=1.0)


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
            pred = model(x)
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


def train(train_conv, val_conv, spec: dict, scaling: tuple, months: int, *, epochs: int,
          batch_size: int, learning_rate: float, steps: int, seed: int,
          rank: int = 0, world: int = 1, on_epoch=None) -> TrainResult:
    """Train the model on this rank's shard; evaluate on rank 0 after each epoch."""
    torch.manual_seed(seed)
    model = build_model(spec)
    model.set_scaling(*scaling)
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(net.parameters(), lr=learning_rate)
    history = []
    stream = data.training_batches(train_conv, batch_size, steps * epochs, seed, rank, world)
    for epoch in range(1, epochs + 1):
        net.train()
        loss_sum = 0.0
        for _ in range(steps):
            x, y, mask = data.to_tensors(next(stream), months)
            opt.zero_grad()
            loss = masked_mse(net(x), y, mask)
            loss.backward()
            opt.step()
            loss_sum += loss.item()
        row = {"epoch": epoch, "train_loss": loss_sum / steps}
        if rank == 0 and val_conv is not None:
            row.update(evaluate(model, data.all_batches(val_conv, batch_size), months))
        history.append(row)
        if on_epoch is not None and rank == 0:
            on_epoch(row)
    stream.close()
    return TrainResult(state_dict=state_bytes(model), spec=spec, history=history)
