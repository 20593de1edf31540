"""The in-memory training loop of the evaluation's own models (the bespoke end-to-end LSTM,
the target comparison): Adam over seeded shuffled mini-batches of a sample that fits in
memory. The pipeline's encoders train distributed in ``microseg.model.train``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from microseg.model.train import rate_schedule


def fit(model: nn.Module, arrays: tuple[np.ndarray, ...], loss: Callable[..., torch.Tensor], epochs: int,
        batch_size: int, learning_rate: float, seed: int, lr_step_epochs: int | None = None,
        lr_gamma: float = 0.5) -> nn.Module:
    """Train ``model`` on rows of ``arrays`` (aligned on the first axis) with
    ``loss(model, *batch)``; with ``lr_step_epochs`` the rate is multiplied by ``lr_gamma``
    every that many epochs (StepLR, as ``model.lr_step_epochs`` in the pipeline's training);
    returns it in eval mode."""
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    sched = rate_schedule(opt, lr_step_epochs, lr_gamma)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(tensors[0]))
        for i in range(0, len(order), batch_size):
            idx = torch.from_numpy(order[i:i + batch_size])
            opt.zero_grad()
            loss(model, *(t[idx] for t in tensors)).backward()
            opt.step()
        if sched is not None:
            sched.step()
    return model.eval()
