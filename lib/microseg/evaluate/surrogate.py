"""Explanation after arXiv 2109.11871: a linear surrogate that reconstructs the encoder's
hidden state from interpretable inputs, its fidelity (R^2 on held-out customers), and per
segment the inputs that push its customers' hidden states towards the segment most. A
surrogate below the fidelity threshold explains nothing: no drivers, and the reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

DRIVERS = ["segment", "rank", "feature", "score"]


def window_inputs(x: np.ndarray, active: np.ndarray, names: list[str], recent: int = 3
                  ) -> tuple[np.ndarray, list[str]]:
    """Per feature: its mean over the active months and its mean over the last ``recent``
    months (the surrogate's view of level and of where the customer is heading)."""
    weights = active[:, :, None]
    mean = (x * weights).sum(1) / np.maximum(weights.sum(1), 1)
    last = x[:, -recent:, :].mean(1)
    return np.hstack([mean, last]), [f"{n} (window mean)" for n in names] + [f"{n} (last {recent} months)" for n in names]


def fit(inputs: np.ndarray, hidden: np.ndarray, train: np.ndarray, alpha: float = 1.0):
    """Ridge on standardised inputs, fitted on ``train`` rows; returns (model, fidelity),
    fidelity = {"r2": variance-weighted R^2 on the other rows, "r2_per_dim": [...]}."""
    model = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(inputs[train], hidden[train])
    test = ~train if (~train).sum() >= 2 else train
    pred = model.predict(inputs[test])
    return model, {"r2": float(r2_score(hidden[test], pred, multioutput="variance_weighted")),
                   "r2_per_dim": [float(v) for v in r2_score(hidden[test], pred, multioutput="raw_values")],
                   "inputs": int(inputs.shape[1]), "rows": int(len(inputs))}


def drivers(model, inputs: np.ndarray, segments: np.ndarray, names: list[str], top: int = 5) -> pd.DataFrame:
    """For each segment: the inputs whose surrogate contribution points most along the
    segment's shift from the average hidden state. Contribution of input j to segment s:
    W[:, j] * (mean of standardised input j in s - overall mean), projected on the unit
    vector of the segment's predicted shift."""
    scaler, ridge = model[0], model[-1]
    z = scaler.transform(inputs)
    w = ridge.coef_                                    # hidden x inputs
    rows = []
    for s in np.unique(segments):
        dz = z[segments == s].mean(0) - z.mean(0)
        shift = w @ dz
        norm = np.linalg.norm(shift)
        if norm == 0:
            continue
        score = (w * dz[None, :]).T @ (shift / norm)   # per input
        for rank, j in enumerate(np.argsort(-score)[:top], start=1):
            rows.append({"segment": int(s), "rank": rank, "feature": names[j], "score": float(score[j])})
    return pd.DataFrame(rows, columns=DRIVERS)


def explain(inputs: np.ndarray, hidden: np.ndarray, train: np.ndarray, segments: np.ndarray, names: list[str],
            min_r2: float) -> tuple[dict, pd.DataFrame]:
    """(fidelity, drivers) of a surrogate fitted as ``fit`` does. Fidelity below ``min_r2``
    (or undefined): no drivers, and ``fidelity["unexplained"]`` says why."""
    model, fidelity = fit(inputs, hidden, train)
    fidelity["min_r2"] = min_r2
    if not fidelity["r2"] >= min_r2:
        fidelity["unexplained"] = (
            f"The linear surrogate does not explain the hidden state: its fidelity R² {fidelity['r2']:.2f} is "
            f"below evaluate.min_surrogate_r2 ({min_r2:g}), so no inputs are named as drivers of the segments")
        return fidelity, pd.DataFrame(columns=DRIVERS)
    return fidelity, drivers(model, inputs, segments, names)
