"""Pure metric functions on small arrays (numpy in, floats out), scikit-learn underneath."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    adjusted_rand_score,
    average_precision_score,
    davies_bouldin_score,
    f1_score,
    roc_auc_score,
    silhouette_score,
)


def cluster_quality(x: np.ndarray, labels: np.ndarray, seed: int, max_rows: int = 5_000) -> dict[str, float]:
    """Silhouette and Davies-Bouldin of a labelling (NaN when fewer than 2 clusters);
    silhouette on at most ``max_rows`` rows (it is quadratic)."""
    if len(np.unique(labels)) < 2:
        return {"silhouette": float("nan"), "davies_bouldin": float("nan")}
    sil = silhouette_score(x, labels, sample_size=min(max_rows, len(x)), random_state=seed)
    return {"silhouette": float(sil), "davies_bouldin": float(davies_bouldin_score(x, labels))}


def within_variance_share(values: np.ndarray, labels: np.ndarray) -> float:
    """Share of the total variance of ``values`` (rows x dims) left within the groups of
    ``labels``: 0 when every group is a point, 1 when the groups explain nothing."""
    total = ((values - values.mean(0)) ** 2).sum()
    if total == 0:
        return float("nan")
    within = sum(((values[labels == g] - values[labels == g].mean(0)) ** 2).sum() for g in np.unique(labels))
    return float(within / total)


def ari(labels: np.ndarray, truth: np.ndarray) -> float:
    return float(adjusted_rand_score(truth, labels))


def kmeans_labels(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """KMeans labels at a given k (for comparing representations at the same granularity)."""
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)


def macro_f1(y: np.ndarray, proba: np.ndarray) -> float:
    return float(f1_score(y, proba.argmax(1), average="macro"))


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(y, score))


def pr_auc(y: np.ndarray, score: np.ndarray) -> float:
    return float(average_precision_score(y, score))

