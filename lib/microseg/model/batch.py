"""One small batch type passed between the loader, the encoders and the objectives.

A customer's months are *valid* from their first to their last active month: leading
months (before the history starts) and trailing months (after it stops, e.g. a closed
account read at a later scoring date) are padding. ``left_align`` moves every valid span
to position 0, so an encoder can pack the sequences and an objective can index month
``t + h`` without caring where the window started.

>>> active = torch.tensor([[0., 1., 1., 0.], [1., 1., 1., 1.]])
>>> valid_span(active).tolist()
[[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]]
>>> b = left_align(torch.arange(8.).reshape(2, 4, 1), torch.zeros(2, 4, 5), active, active)
>>> b.x[0, :, 0].tolist(), b.lengths.tolist()
([1.0, 2.0, 0.0, 0.0], [2, 4])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Batch:
    """Left-aligned months: ``x`` [B, T, F] raw features, ``traits`` [B, T, 5] each month's
    spending personality, ``trait_mask`` [B, T] (1 where a month has one), ``valid`` [B, T]
    (1 on the first ``lengths`` months)."""

    x: torch.Tensor
    traits: torch.Tensor
    trait_mask: torch.Tensor
    valid: torch.Tensor
    lengths: torch.Tensor


def valid_span(active: torch.Tensor) -> torch.Tensor:
    """1 from each row's first to its last active month (inclusive), else 0; a row with no
    active month gets its last month, so every sequence has length >= 1."""
    t = torch.arange(active.shape[1], device=active.device).expand_as(active)
    on = active > 0
    first = torch.where(on, t, active.shape[1]).min(dim=1).values
    last = torch.where(on, t, -1).max(dim=1).values
    empty = last < 0
    first = torch.where(empty, active.shape[1] - 1, first)
    last = torch.where(empty, active.shape[1] - 1, last)
    return ((t >= first[:, None]) & (t <= last[:, None])).float()


def left_align(x: torch.Tensor, traits: torch.Tensor, trait_mask: torch.Tensor, active: torch.Tensor) -> Batch:
    """The valid span of every row moved to the front; padding after it is zero."""
    span = valid_span(active)
    lengths = span.sum(dim=1).long()
    first = span.argmax(dim=1)
    t = torch.arange(x.shape[1], device=x.device)
    src = (first[:, None] + t).clamp(max=x.shape[1] - 1)
    keep = (t[None, :] < lengths[:, None]).float()

    def gather(a: torch.Tensor) -> torch.Tensor:
        idx = src.view(*src.shape, *([1] * (a.dim() - 2))).expand(*src.shape, *a.shape[2:])
        out = torch.gather(a, 1, idx)
        return out * keep.view(*keep.shape, *([1] * (a.dim() - 2)))

    return Batch(gather(x), gather(traits), gather(trait_mask), keep, lengths)
