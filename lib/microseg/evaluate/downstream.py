"""Downstream tasks on a held-out split: loan default (ROC AUC, PR AUC) and liquidity class
(macro F1), each with a bootstrap 95% interval, for every feature set and the bespoke models."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from microseg.evaluate import metrics

# task -> label column, and the metrics reported for it: name -> (function, uses)
TASKS = {
    "default": ("loan_default", {"roc_auc": metrics.roc_auc, "pr_auc": metrics.pr_auc}),
    "liquidity": ("liquidity_class", {"macro_f1": metrics.macro_f1}),
}


def labelled(customers: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row mask with a label, the labels as int, train mask) for ``task``; the test split
    is held out, training uses train + validation."""
    column = TASKS[task][0]
    mask = customers[column].notna().to_numpy()
    y = customers[column].fillna(-1).astype(int).to_numpy()
    train = (customers["split"] != "test").to_numpy()
    return mask, y, train


def usable(y_train: np.ndarray, y_test: np.ndarray) -> bool:
    """Both splits hold every class of the task (else no metric is defined)."""
    classes = np.unique(y_train)
    return len(classes) >= 2 and set(np.unique(y_test)) <= set(classes) and len(np.unique(y_test)) >= 2


def gbm(seed: int) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, early_stopping=False,
                                          random_state=seed)


def tabular_predictor(seed: int) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """fit on (x_train, y_train), return class probabilities for x_test."""
    def predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        return gbm(seed).fit(x_train, y_train).predict_proba(x_test)
    return predict


def score(task: str, y: np.ndarray, proba: np.ndarray, n_boot: int, seed: int) -> list[dict]:
    """One row per metric of ``task``: value and bootstrap interval."""
    rows = []
    for name, fn in TASKS[task][1].items():
        pred = proba[:, 1] if task == "default" else proba
        value, low, high = metrics.bootstrap_ci(fn, y, pred, n_boot, seed)
        rows.append({"task": task, "metric": name, "value": value, "ci_low": low, "ci_high": high,
                     "n_test": int(len(y))})
    return rows


def compare(customers: pd.DataFrame, models: dict[str, tuple[np.ndarray, Callable]], n_boot: int,
            seed: int) -> pd.DataFrame:
    """Every model on every task with labels. ``models``: name -> (inputs aligned with
    ``customers``, predictor(x_train, y_train, x_test) -> probabilities)."""
    rows = []
    for task in TASKS:
        mask, y, train = labelled(customers, task)
        tr, te = mask & train, mask & ~train
        if not usable(y[tr], y[te]):
            continue
        for name, (inputs, predict) in models.items():
            proba = predict(inputs[tr], y[tr], inputs[te])
            rows += [{"model": name, **r} for r in score(task, y[te], proba, n_boot, seed)]
    return pd.DataFrame(rows, columns=["model", "task", "metric", "value", "ci_low", "ci_high", "n_test"])
