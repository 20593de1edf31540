"""Which target should the LSTM learn: this month's traits (the paper) or next month's?

This month's traits are a fixed function of this month's spend, so the network can learn
them as a near-identity map and its last hidden state need not carry the customer's
history; next month's traits make it forecast. Both encoders are trained here the same way
(the configured encoder's size, the same sample, epochs and optimiser, over several seeds)
and their hidden states are judged the same way: micro- and coarse-segment recovery at the
planted k, and the downstream tasks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from microseg.evaluate import downstream, metrics
from microseg.evaluate.fit import fit
from microseg.model.networks import build_model
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


def train_encoder(x: np.ndarray, y: np.ndarray, mask: np.ndarray, scaling, spec: dict, epochs: int,
                  batch_size: int, learning_rate: float, seed: int) -> torch.nn.Module:
    """The encoder of ``spec`` fitted by masked MSE on (x [n, T, F], y [n, T, 5], mask [n, T])."""
    torch.manual_seed(seed)
    model = build_model(spec)
    model.set_scaling(*scaling)
    return fit(model, (x.astype(np.float32), y, mask), lambda m, xb, yb, mb: masked_mse(m(xb), yb, mb),
               epochs, batch_size, learning_rate, seed)


def compare(customers: pd.DataFrame, x: np.ndarray, y: np.ndarray, mask: np.ndarray, scaling, spec: dict,
            epochs: int, batch_size: int, learning_rate: float, seeds: list[int]) -> pd.DataFrame:
    """One row per (target, seed, measure): held-out fit (test MSE), ARI of KMeans at the
    planted k against the planted micro-segments and coarse groups (generated data only),
    and the downstream metrics of a classifier on the hidden states. The encoders see the
    train split only; the classifiers are fitted on train + validation, scored on test."""
    train = (customers["split"] == "train").to_numpy()
    test = (customers["split"] == "test").to_numpy()
    xt = torch.from_numpy(x.astype(np.float32))
    rows = []
    for seed in seeds:
        vectors = {}
        for target in TARGETS:
            yt, mt = shifted(y, mask, target)
            model = train_encoder(x[train], yt[train], mt[train], scaling, spec, epochs, batch_size,
                                  learning_rate, seed)
            with torch.inference_mode():
                test_mse = float(masked_mse(model(xt[test]), torch.from_numpy(yt[test]), torch.from_numpy(mt[test])))
                vectors[target] = model.embed(xt).numpy().astype(np.float64)
            rows.append({"target": target, "seed": seed, "measure": "test_mse", "value": test_mse})
            if "micro_segment" in customers:
                for level, column in (("micro", "micro_segment"), ("coarse", "coarse_group")):
                    planted = customers[column].to_numpy()
                    found = metrics.kmeans_labels(vectors[target], len(np.unique(planted)), seed)
                    rows.append({"target": target, "seed": seed, "measure": f"ari_{level}_at_planted_k",
                                 "value": metrics.ari(found, planted)})
        predict = downstream.tabular_predictor(seed)
        results = downstream.compare(customers, {t: (v, predict) for t, v in vectors.items()}, 10, seed)
        rows += [{"target": r["model"], "seed": seed, "measure": f"{r['task']}.{r['metric']}", "value": r["value"]}
                 for r in results.to_dict(orient="records")]
    return pd.DataFrame(rows, columns=["target", "seed", "measure", "value"])


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (measure, target): mean, min and max over the seeds."""
    return (frame.groupby(["measure", "target"])["value"].agg(["mean", "min", "max", "count"])
            .reset_index())
