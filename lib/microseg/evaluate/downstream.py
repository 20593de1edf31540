"""Downstream tasks scored by repeated stratified k-fold over every labelled customer: loan
default (ROC AUC, PR AUC) and liquidity class (macro F1). Every model sees the same folds, so
models are compared by their paired per-fold differences, with the Nadeau & Bengio corrected
resampled t interval (training sets overlap between folds, so the plain t interval is too narrow)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy import stats
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from microseg.evaluate import metrics

Predictor = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

# task -> label column, and the metrics reported for it: name -> function(y, class probabilities)
TASKS = {
    "default": ("loan_default", {"roc_auc": lambda y, p: metrics.roc_auc(y, p[:, 1]),
                                 "pr_auc": lambda y, p: metrics.pr_auc(y, p[:, 1])}),
    "liquidity": ("liquidity_class", {"macro_f1": metrics.macro_f1}),
}
SCORES = ["model", "task", "metric", "repeat", "fold", "value", "n_train", "n_test", "n_labelled", "n_positive",
          "seconds"]
SKIPPED = ["task", "n_labelled", "reason"]
SUMMARY = ["model", "task", "metric", "mean", "sd", "splits", "n_labelled", "n_positive", "seconds_per_fold"]
PAIRED = ["model", "reference", "task", "metric", "mean_diff", "sd_diff", "diff_low", "diff_high", "splits",
          "test_train_ratio", "margin", "held"]


def labelled(customers: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row positions with a label, the labels coded 0..K-1, the original label values) for ``task``."""
    column = customers[TASKS[task][0]]
    rows = np.flatnonzero(column.notna().to_numpy())
    values, codes = np.unique(column.to_numpy()[rows].astype(int), return_inverse=True)
    return rows, codes, values


def skip_reason(y: np.ndarray, folds: int) -> str | None:
    """Why a task with labels ``y`` cannot be cross-validated in ``folds`` stratified folds, or None."""
    counts = np.bincount(y)
    if len(counts) < 2:
        return f"{len(counts)} class(es) among {len(y)} labelled customers"
    if counts.min() < folds:
        return f"rarest class has {counts.min()} customers, fewer than {folds} folds"
    return None


def splits(y: np.ndarray, folds: int, repeats: int, seed: int) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """(repeat, fold, train positions, test positions): seeded repeated stratified k-fold."""
    cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    return [(i // folds, i % folds, tr, te) for i, (tr, te) in enumerate(cv.split(np.zeros(len(y)), y))]


def gbm(seed: int, max_iter: int = 200) -> HistGradientBoostingClassifier:
    """Scale-free (histogram binning): nothing to fit outside the training fold."""
    return HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.05, early_stopping=False,
                                          random_state=seed)


def tabular_predictor(seed: int, max_iter: int = 200) -> Predictor:
    """fit on (x_train, y_train), return class probabilities for x_test."""
    def predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        return gbm(seed, max_iter).fit(x_train, y_train).predict_proba(x_test)
    return predict


PROBE_CS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)   # the linear probe's L2 strengths to choose from


def linear_predictor(seed: int) -> Predictor:
    """The linear probe: standardised inputs, an L2 logistic regression whose strength is
    chosen from ``PROBE_CS`` by log loss over 3 inner folds; the scaler and the choice are
    fitted on the training fold only. Returns class probabilities for x_test."""
    def predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        inner = StratifiedKFold(3, shuffle=True, random_state=seed)
        probe = LogisticRegressionCV(Cs=list(PROBE_CS), cv=inner, scoring="neg_log_loss", max_iter=3000)
        return make_pipeline(StandardScaler(), probe).fit(x_train, y_train).predict_proba(x_test)
    return predict


def joined(*inputs: np.ndarray) -> np.ndarray:
    """Feature sets aligned on customers side by side (e.g. bespoke aggregates + an embedding)."""
    return np.hstack([np.asarray(x, np.float64).reshape(len(x), -1) for x in inputs])


def _fold(name: str, task: str, repeat: int, fold: int, inputs: np.ndarray, predict: Predictor, at: np.ndarray,
          y: np.ndarray, tr: np.ndarray, te: np.ndarray, n_pos: float) -> list[dict]:
    """One model fitted on one training fold and scored on its test fold: a row per metric."""
    start = time.perf_counter()
    proba = predict(inputs[at[tr]], y[tr], inputs[at[te]])
    seconds = time.perf_counter() - start
    return [{"model": name, "task": task, "metric": metric, "repeat": repeat, "fold": fold,
             "value": fn(y[te], proba), "n_train": len(tr), "n_test": len(te), "n_labelled": len(y),
             "n_positive": n_pos, "seconds": seconds} for metric, fn in TASKS[task][1].items()]


def cross_validate(customers: pd.DataFrame, models: dict[str, tuple[np.ndarray, Predictor]], folds: int,
                   repeats: int, seed: int, jobs: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores: one row per model, task, metric, repeat and fold; skipped: one row per task
    that cannot be scored, with the reason). ``models``: name -> (inputs aligned with
    ``customers``, predictor(x_train, y_train, x_test) -> class probabilities); every model
    is fitted and scored on the same folds. The fits are independent: ``jobs`` processes
    share them (joblib); every predictor is seeded, so the scores do not depend on ``jobs``."""
    tasks, skipped = [], []
    for task in TASKS:
        at, y, values = labelled(customers, task)
        reason = skip_reason(y, folds)
        if reason:
            skipped.append({"task": task, "n_labelled": len(y), "reason": reason})
            continue
        n_pos = int((values[y] == 1).sum()) if len(values) == 2 else np.nan
        tasks += [delayed(_fold)(name, task, repeat, fold, inputs, predict, at, y, tr, te, n_pos)
                  for repeat, fold, tr, te in splits(y, folds, repeats, seed)
                  for name, (inputs, predict) in models.items()]
    rows = [r for out in Parallel(n_jobs=jobs, batch_size=1)(tasks) for r in out]   # fits of very unequal length
    return pd.DataFrame(rows, columns=SCORES), pd.DataFrame(skipped, columns=SKIPPED)


def summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per (model, task, metric): mean and standard deviation over the folds."""
    return (scores.groupby(["model", "task", "metric"], sort=False)
            .agg(mean=("value", "mean"), sd=("value", "std"), splits=("value", "size"),
                 n_labelled=("n_labelled", "first"), n_positive=("n_positive", "first"),
                 seconds_per_fold=("seconds", "mean"))
            .reset_index()[SUMMARY])


def corrected_interval(diffs: np.ndarray, test_train_ratio: float, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of per-split differences: Nadeau & Bengio's corrected resampled t
    interval, variance times (1/J + n_test/n_train), t with J - 1 degrees of freedom."""
    j = len(diffs)
    mean = float(np.mean(diffs))
    half = stats.t.ppf(0.5 + level / 2, j - 1) * np.sqrt((1 / j + test_train_ratio) * np.var(diffs, ddof=1))
    return mean, mean - half, mean + half


def verdict(diff_low: float, diff_high: float, margin: float = 0.05) -> dict:
    """'As good as the reference' holds when the interval of (model - reference) includes 0
    or lies above it, and its lower end is above -``margin`` (a wide interval cannot pass)."""
    held = bool(diff_high >= 0 and diff_low > -margin)
    where = "lies below" if diff_high < 0 else "lies above" if diff_low > 0 else "includes"
    return {"held": held, "diff_low": diff_low, "diff_high": diff_high, "margin": margin,
            "rule": f"the paired difference's interval [{diff_low:.3f}, {diff_high:.3f}] {where} 0, its lower "
                    f"end {'above' if diff_low > -margin else 'at or below'} -{margin:g}"}


def paired(scores: pd.DataFrame, reference: str, margin: float = 0.05, level: float = 0.95) -> pd.DataFrame:
    """Per (model, task, metric), every other model minus ``reference`` on the same folds: mean
    difference, corrected interval and the ``verdict``."""
    keys = ["task", "metric", "repeat", "fold"]
    ref = scores[scores["model"] == reference][keys + ["value"]]
    both = scores[scores["model"] != reference].merge(ref, on=keys, suffixes=("", "_ref"))
    rows = []
    for (model, task, metric), g in both.groupby(["model", "task", "metric"], sort=False):
        diffs = (g["value"] - g["value_ref"]).to_numpy()
        ratio = float(g["n_test"].mean() / g["n_train"].mean())
        mean, low, high = corrected_interval(diffs, ratio, level)
        rows.append({"model": model, "reference": reference, "task": task, "metric": metric, "mean_diff": mean,
                     "sd_diff": float(np.std(diffs, ddof=1)), "diff_low": low, "diff_high": high,
                     "splits": len(diffs), "test_train_ratio": ratio, "margin": margin,
                     "held": verdict(low, high, margin)["held"]})
    return pd.DataFrame(rows, columns=PAIRED)
