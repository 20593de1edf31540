"""What an encoder learns: objectives as weighted sums of small parts.

A part is a target builder plus where its head reads from: every month's hidden state
(``step`` parts: forecasts from month t) or the customer's embedding (``customer`` parts: the
whole window from one vector). Each part's loss is its masked squared error divided by the
batch variance of its target (1 - R^2, pooled over the part's dimensions), so parts of
different units add up with weights that mean what they say.

Parts (``h`` a horizon in months):

- ``traits@h``: the spending personality of month t + h (``traits@0``: the paper's target,
  ``traits@1``: next month's);
- ``shares@h``: the class shares of month t + h;
- ``reconstruct``: every valid month's class shares, from the embedding (a sequence
  autoencoder);
- ``shape``: the long-run shape (``model.shape``) of the class count shares (each month's
  transactions per class over its total), from the embedding: the mix a customer buys and
  how it moves, read from how often each class is bought (a steadier view than amount
  shares: it recovered the planted micro-segments better, see the README);
- ``account``: the same long-run shape of the account block (log income, log outflow,
  signed log balance), from the embedding: how much flows and how thin the buffer runs,
  which class shares alone do not carry;
- ``window_traits``: the window's mean traits, from the embedding (the feed-forward
  network's target in the paper).

``profile`` (the default) is ``shape`` with a lighter ``account``: segments come from the
embedding, so the cash-flow part is weighted to inform it without drowning the behaviour
(the weights were chosen by the evaluation; see the README).

``model.objective`` is a preset name, several joined by ``+`` (weights add), or a mapping
``{part: weight}``.

>>> resolve("next+shape")
{'traits@1': 1.0, 'shape': 1.0}
"""

from __future__ import annotations

import re

import torch

from microseg.model.batch import Batch
from microseg.model.layout import month_angles, n_classes
from microseg.model.shape import PARTS as SHAPE_PARTS
from microseg.model.shape import count_shares, half_moments, trajectory_shape

HORIZONS = (1, 3, 6)
PRESETS: dict[str, dict[str, float]] = {
    "current": {"traits@0": 1.0},
    "next": {"traits@1": 1.0},
    "multi_horizon": {f"{kind}@{h}": 1.0 for kind in ("traits", "shares") for h in HORIZONS},
    "reconstruct": {"reconstruct": 1.0},
    "shape": {"shape": 1.0},
    "account": {"account": 1.0},
    "profile": {"shape": 1.0, "account": 0.3},
    "window_traits": {"window_traits": 1.0},
}
_PART = re.compile(r"^(traits|shares)@(\d+)$|^(reconstruct|shape|account|window_traits)$")


def resolve(objective: str | dict[str, float]) -> dict[str, float]:
    """``{part: weight}`` of a preset name, ``a+b`` presets, or a mapping (checked)."""
    if isinstance(objective, str):
        parts: dict[str, float] = {}
        for name in objective.split("+"):
            if name.strip() not in PRESETS:
                raise ValueError(f"model.objective: unknown objective {name.strip()!r}; "
                                 f"presets: {', '.join(PRESETS)} (join with '+'), or a mapping part -> weight")
            for part, w in PRESETS[name.strip()].items():
                parts[part] = parts.get(part, 0.0) + w
        return parts
    bad = [p for p in objective if not _PART.match(p)]
    if bad or not objective or any(w < 0 for w in objective.values()) or not sum(objective.values()) > 0:
        raise ValueError(f"model.objective: parts must be traits@H, shares@H, reconstruct, shape, account or "
                         f"window_traits with weights >= 0 and some > 0; got {objective}")
    return {p: float(w) for p, w in objective.items()}


def metric_key(part: str) -> str:
    """``part`` as an MLflow metric name (which may not hold '@'): ``traits@1`` -> ``traits_at_1``."""
    return part.replace("@", "_at_")


def is_step_part(part: str) -> bool:
    return "@" in part


def part_width(part: str, n_traits: int, n_classes: int, months: int, n_account: int) -> int:
    """Output width of the head of ``part``."""
    if part.startswith("traits@") or part == "window_traits":
        return n_traits
    if part.startswith("shares@"):
        return n_classes
    if part == "reconstruct":
        return months * n_classes
    return len(SHAPE_PARTS) * (n_account if part == "account" else n_classes)


def _ahead(a: torch.Tensor, mask: torch.Tensor, h: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Month t's target is month t + h's value (none past the window's end)."""
    if h == 0:
        return a, mask
    pad = a.new_zeros(a.shape[0], h, *a.shape[2:])
    return torch.cat([a[:, h:], pad], dim=1), torch.cat([mask[:, h:], mask.new_zeros(mask.shape[0], h)], dim=1)


def targets(part: str, batch: Batch, shares: torch.Tensor, account: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(target, mask) of ``part``: [B, T, D] and [B, T] for step parts (masked where month t
    is padding or t + h has no value), [B, D] and [B, D] for customer parts. ``shares`` and
    ``account`` are the batch's scaled class shares [B, T, C] and account block [B, T, A];
    ``shape`` reads the class count shares of ``batch.x`` (its third block)."""
    kind, _, h = part.partition("@")
    if kind == "traits":
        y, m = _ahead(batch.traits, batch.trait_mask, int(h))
        return y, m * batch.valid
    if kind == "shares":
        y, m = _ahead(shares, batch.valid, int(h))
        return y, m * batch.valid
    if part == "reconstruct":
        mask = batch.valid.unsqueeze(-1).expand_as(shares)
        return shares.flatten(1), mask.flatten(1)
    if part == "shape":
        c = shares.shape[-1]
        y = trajectory_shape(count_shares(batch.x[..., 2 * c:3 * c]), batch.valid, month_angles(batch.x))
        return y, torch.ones_like(y)
    if part == "account":
        y = trajectory_shape(account, batch.valid, month_angles(batch.x))
        return y, torch.ones_like(y)
    w = batch.trait_mask.unsqueeze(-1)
    y = (batch.traits * w).sum(1) / w.sum(1).clamp(min=1.0)
    return y, (batch.trait_mask.sum(1, keepdim=True) > 0).float().expand_as(y)


def part_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked squared error over the batch variance of the target (pooled over dimensions)."""
    if mask.dim() < target.dim():
        mask = mask.unsqueeze(-1).expand_as(target)
    n = mask.sum().clamp(min=1.0)
    se = ((pred - target) ** 2 * mask).sum() / n
    mean = (target * mask).sum(dim=tuple(range(target.dim() - 1)), keepdim=True) / \
        mask.sum(dim=tuple(range(target.dim() - 1)), keepdim=True).clamp(min=1.0)
    var = (((target - mean) ** 2) * mask).sum() / n
    return se / var.detach().clamp(min=1e-6)


def track_variance(running: torch.Tensor, values: torch.Tensor, momentum: float = 0.02) -> None:
    """Update ``running`` (in place, as batch norm does) with the batch variance of each
    column of ``values`` [B, D] (the shape head's outputs: ``shape_metric`` standardises by it)."""
    if len(values) > 1:
        with torch.no_grad():
            running.lerp_(values.detach().var(dim=0), momentum)


def track_halves(running: torch.Tensor, batch: Batch, momentum: float = 0.02) -> None:
    """Update ``running`` [5, D] (in place) with the batch's split-half moments of the
    ``shape`` target (``model.shape.half_moments``): ``shape_metric`` weights each shape
    dimension by the reliability they give."""
    c = n_classes(batch.x.shape[-1])
    with torch.no_grad():
        shares = count_shares(batch.x[..., 2 * c:3 * c])
        running.lerp_(half_moments(shares, batch.valid, month_angles(batch.x)), momentum)


def loss(model, batch: Batch, forward=None) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted objective of ``model`` on ``batch``, and each part's loss; ``forward``
    runs the model when it is wrapped (e.g. DistributedDataParallel)."""
    preds = (forward or model)(batch)
    shares, account = model.scaled_blocks(batch.x)
    total, parts = 0.0, {}
    for part, weight in model.objective.items():
        target, mask = targets(part, batch, shares, account)
        if part == "shape" and model.training:
            track_variance(model.shape_var, preds[part])
            track_halves(model.shape_halves, batch)
        value = part_loss(preds[part], target, mask)
        parts[part] = float(value.detach())
        total = total + weight * value
    return total / sum(model.objective.values()), parts
