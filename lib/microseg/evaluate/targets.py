"""Which target should the LSTM learn: this month's traits (the paper) or next month's?

This month's traits are a fixed function of this month's spend, so the network can learn
them as a near-identity map and its last hidden state need not carry the customer's
history; next month's traits make it forecast. Both encoders are trained here the same way
(same sample, seed, size, epochs, optimiser) and their hidden states are judged the same
way: micro- and coarse-segment recovery at the planted k, and the downstream tasks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from microseg.evaluate import downstream, metrics
from microseg.model.networks import LSTMEncoder
from microseg.model.train import masked_mse
from microseg.taxonomy import TRAITS

TARGETS = ("current", "next")


def monthly_targets(trait_months: pd.Series, months: int) -> tuple[np.ndarray, np.ndarray]:
    """Per customer, [months, 5] trait scores and a [months] mask (1 where the month has a
    spending personality) from lists of ``{"t": month index, "v": five scores}``."""
    y = np.zeros((len(trait_months), months, len(TRAITS)), np.float32)
    mask = np.zeros((len(trait_months), months), np.float32)
    for i, cells in enumerate(trait_months):
        for cell in cells if cells is not None else ():
            y[i, cell["t"]], mask[i, cell["t"]] = cell["v"], 1.0
    return y, mask


def shifted(y: np.ndarray, mask: np.ndarray, target: str) -> tuple[np.ndarray, np.ndarray]:
    """The targets of month t: month t's traits (``current``) or month t+1's (``next``, none
    for the window's last month), as the sequences stage builds them."""
    if target == "current":
        return y, mask
    return (np.concatenate([y[:, 1:], np.zeros_like(y[:, :1])], axis=1),
            np.concatenate([mask[:, 1:], np.zeros_like(mask[:, :1])], axis=1))


def train_encoder(x: np.ndarray, y: np.ndarray, mask: np.ndarray, scaling, hidden: int, epochs: int,
                  batch_size: int, learning_rate: float, seed: int) -> LSTMEncoder:
    """An LSTM encoder fitted by masked MSE on (x [n, T, F], y [n, T, 5], mask [n, T])."""
    torch.manual_seed(seed)
    model = LSTMEncoder(x.shape[2], hidden=hidden)
    model.set_scaling(*scaling)
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    xs, ys, ms = (torch.from_numpy(a.astype(np.float32)) for a in (x, y, mask))
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(xs))
        for i in range(0, len(order), batch_size):
            idx = torch.from_numpy(order[i:i + batch_size])
            opt.zero_grad()
            masked_mse(model(xs[idx]), ys[idx], ms[idx]).backward()
            opt.step()
    return model.eval()


def compare(customers: pd.DataFrame, x: np.ndarray, y: np.ndarray, mask: np.ndarray, scaling,
            hidden: int, epochs: int, batch_size: int, learning_rate: float, n_boot: int,
            seed: int) -> pd.DataFrame:
    """One row per (target, measure): held-out fit, ARI of KMeans at the planted k against
    the planted micro-segments and coarse groups (generated data only), and the downstream
    metrics of a classifier on the hidden states."""
    train = (customers["split"] == "train").to_numpy()
    test = (customers["split"] == "test").to_numpy()
    rows, vectors = [], {}
    for target in TARGETS:
        yt, mt = shifted(y, mask, target)
        model = train_encoder(x[train], yt[train], mt[train], scaling, hidden, epochs, batch_size,
                              learning_rate, seed)
        with torch.inference_mode():
            xt = torch.from_numpy(x.astype(np.float32))
            test_mse = float(masked_mse(model(xt[test]), torch.from_numpy(yt[test]), torch.from_numpy(mt[test])))
            vectors[target] = model.embed(xt).numpy().astype(np.float64)
        rows.append({"target": target, "measure": "test_mse", "value": test_mse})
        if "micro_segment" in customers:
            for level, column in (("micro", "micro_segment"), ("coarse", "coarse_group")):
                planted = customers[column].to_numpy()
                found = metrics.kmeans_labels(vectors[target], len(np.unique(planted)), seed)
                rows.append({"target": target, "measure": f"ari_{level}_at_planted_k",
                             "value": metrics.ari(found, planted)})
    predict = downstream.tabular_predictor(seed)
    results = downstream.compare(customers, {t: (v, predict) for t, v in vectors.items()}, n_boot, seed)
    rows += [{"target": r["model"], "measure": f"{r['task']}.{r['metric']}", "value": r["value"],
              "ci_low": r["ci_low"], "ci_high": r["ci_high"]} for r in results.to_dict(orient="records")]
    return pd.DataFrame(rows, columns=["target", "measure", "value", "ci_low", "ci_high"])
