"""The in-memory training loop of the evaluation's own models (the bespoke end-to-end LSTM,
the target comparison): Adam over seeded shuffled mini-batches of a sample that fits in
memory. The pipeline's encoders train distributed in ``microseg.model.train``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn


def fit(model: nn.Module, arrays: tuple[np.ndarray, ...], loss: Callable[..., torch.Tensor], epochs: int,
        batch_size: int, learning_rate: float, seed: int) -> nn.Module:
    """Train ``model`` on rows of ``arrays`` (aligned on the first axis) with
    ``loss(model, *batch)``; returns it in eval mode."""
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(tensors[0]))
        for i in range(0, len(order), batch_size):
            idx = torch.from_numpy(order[i:i + batch_size])
            opt.zero_grad()
            loss(model, *(t[idx] for t in tensors)).backward()
            opt.step()
    return model.eval()
