"""The simple references every learned variant must beat, computed from the same
``gold.sequences`` features the encoders read (nothing trained):

- ``static shares``: each class's mean share over the customer's valid months;
- ``flattened monthly shares``: every month's class shares side by side (T x C values);
- ``hand-made temporal``: per class the window mean, volatility, trend, 6- and 12-month
  seasonal projections on the calendar and level change (``model.shape``), each column
  standardised;
- ``hand-made temporal on count shares``: the same of the class count shares, exactly what
  the ``shape`` objective's target is built from (so no learned shape can claim a view of
  the data the references lack);
- ``... reliability-weighted``: those columns each also multiplied by the square root of
  their split-half reliability (``model.shape.reliability``), the weighting the encoder's
  ``shape_metric`` applies: what the learned metric would give hand-made features, so a
  learned model is also judged without its metric's advantage.

And the two-level clustering that judges any representation at the planted granularity
(coarse k, then the same micro k inside each coarse cluster).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler

from microseg.evaluate.metrics import kmeans_labels
from microseg.model.layout import account, month_angles, n_classes
from microseg.model.networks import batch_of
from microseg.model.shape import count_shares, half_moments, reliability, trajectory_shape

NAMES = ("static shares", "flattened monthly shares", "hand-made temporal", "hand-made temporal on count shares",
         "hand-made temporal on count shares, reliability-weighted")
BESPOKE = "bespoke GBM (RFM, class shares, balances)"


def reference_features(x: np.ndarray) -> dict[str, np.ndarray]:
    """The references for raw features ``x`` [n, T, F] (float32)."""
    c = n_classes(x.shape[2])
    batch = batch_of(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    shares = batch.x[..., c:2 * c]
    v, angles = batch.valid.unsqueeze(-1), month_angles(batch.x)
    static = (shares * v).sum(1) / v.sum(1).clamp(min=1.0)
    temporal = trajectory_shape(shares, batch.valid, angles).numpy().astype(np.float64)
    counts = count_shares(batch.x[..., 2 * c:3 * c])
    counted = StandardScaler().fit_transform(trajectory_shape(counts, batch.valid, angles).numpy().astype(np.float64))
    weights = reliability(half_moments(counts.double(), batch.valid.double(), angles.double())).sqrt().numpy()
    return {
        NAMES[0]: static.numpy().astype(np.float64),
        NAMES[1]: x[..., c:2 * c].reshape(len(x), -1).astype(np.float64),
        NAMES[2]: StandardScaler().fit_transform(temporal),
        NAMES[3]: counted,
        NAMES[4]: counted * weights,
    }


def two_level_labels(x: np.ndarray, k_coarse: int, k_micro: int, seed: int) -> np.ndarray:
    """Coarse KMeans at ``k_coarse``, then KMeans at ``k_micro`` inside each coarse
    cluster; the micro label is coarse * k_micro + local."""
    coarse = kmeans_labels(x, k_coarse, seed)
    out = np.zeros(len(x), dtype=int)
    for g in np.unique(coarse):
        members = coarse == g
        local = kmeans_labels(x[members], k_micro, seed) if members.sum() > k_micro else np.arange(members.sum())
        out[members] = g * k_micro + local
    return out


def bespoke_aggregates(x: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """What a bespoke model is built on, from the same features (so point in time by
    construction): recency, active months, frequency, monetary value, each class's spend
    share over the window, and balance, income and outflow statistics over active months."""
    c = n_classes(x.shape[2])
    x = x.astype(np.float64)
    active = (x != 0).any(-1)
    n = np.maximum(active.sum(1), 1)
    t = np.arange(x.shape[1])
    last = np.where(active, t, -1).max(1)
    spend = np.expm1(x[..., :c])
    shares = spend.sum(1) / np.maximum(spend.sum((1, 2)), 1e-9)[:, None]
    log_income, log_outflow, slog_balance = np.moveaxis(account(x), -1, 0)
    balance = np.sign(slog_balance) * np.expm1(np.abs(slog_balance))
    income, outflow = np.expm1(log_income), np.expm1(log_outflow)

    def stats(v: np.ndarray) -> list[np.ndarray]:
        mean = (v * active).sum(1) / n
        return [mean, np.sqrt((((v - mean[:, None]) * active) ** 2).sum(1) / n)]

    big = np.where(active, balance, np.inf), np.where(active, balance, -np.inf)
    columns = [x.shape[1] - 1 - last, active.sum(1), np.expm1(x[..., 2 * c:3 * c]).sum((1, 2)),
               (outflow * active).sum(1), *stats(balance), np.where(active.any(1), big[0].min(1), 0.0),
               np.where(active.any(1), big[1].max(1), 0.0), *stats(income), *stats(outflow)]
    names = ["recency_months", "active_months", "frequency", "monetary", "balance_mean", "balance_std",
             "balance_min", "balance_max", "income_mean", "income_std", "outflow_mean", "outflow_std"]
    return np.column_stack([*columns, shares]), names + [f"share__{i}" for i in range(c)]
