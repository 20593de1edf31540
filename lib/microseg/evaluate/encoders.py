"""Which objective should the encoder learn? Every objective of ``evaluate.objectives`` is
trained the same way (the configured encoder's size, the same sample, epochs and optimiser,
the training split only) over several seeds, and its hidden states are judged beside the
simple references (``evaluate.references``) at the planted granularity: ARI against the
planted micro-segments and coarse groups at the planted k, and two-level ARI.

The same loop trains the pipeline's default in memory for the central-claim test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from joblib import Parallel, delayed

from microseg.evaluate import metrics, references
from microseg.evaluate.fit import fit
from microseg.model import objectives
from microseg.model.networks import batch_of, build_model


def train_encoder(x: np.ndarray, traits: np.ndarray, trait_mask: np.ndarray, scaling, spec: dict, epochs: int,
                  batch_size: int, learning_rate: float, seed: int, lr_step_epochs: int | None = None,
                  lr_gamma: float = 0.5) -> torch.nn.Module:
    """The encoder of ``spec`` fitted on (x [n, T, F], traits [n, T, 5], trait_mask [n, T]),
    with the pipeline's optimiser and rate schedule."""
    torch.manual_seed(seed)
    model = build_model(spec)
    model.set_scaling(*scaling)
    return fit(model, (x.astype(np.float32), traits.astype(np.float32), trait_mask.astype(np.float32)),
               lambda m, xb, tb, mb: objectives.loss(m, batch_of(xb, tb, mb))[0],
               epochs, batch_size, learning_rate, seed, lr_step_epochs, lr_gamma)


def capped(rows: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """``rows`` (a boolean mask) with at most ``limit`` of its true rows kept, a seeded pick:
    in-memory training stays the same size at any scale."""
    on = np.flatnonzero(rows)
    if len(on) <= limit:
        return rows
    out = np.zeros_like(rows, dtype=bool)
    out[np.random.default_rng(seed).choice(on, size=limit, replace=False)] = True
    return out


def embed(model: torch.nn.Module, x: np.ndarray, rows: int = 4096) -> np.ndarray:
    """Customer vectors of ``x`` in chunks of ``rows``."""
    with torch.inference_mode():
        return np.concatenate([model.embed(torch.from_numpy(x[i:i + rows].astype(np.float32))).numpy()
                               for i in range(0, len(x), rows)]).astype(np.float64)


def planted_scores(vectors: np.ndarray, customers: pd.DataFrame, seed: int) -> dict[str, float]:
    """ARI at the planted k against the planted micro-segments and coarse groups, and the
    two-level ARI (planted coarse k, then the planted micro k per coarse cluster), over the
    customers with a known micro-segment; NaN where a level is unknown (or too few rows)."""
    known = customers["micro_segment"].notna().to_numpy()
    micro = customers["micro_segment"].to_numpy()[known]
    coarse = customers["coarse_group"].to_numpy()[known] if "coarse_group" in customers else np.array([None])
    vectors = vectors[known]
    k_micro = len(np.unique(micro))
    out = dict.fromkeys(("ari_micro", "ari_coarse", "ari_two_level"), float("nan"))
    if not 2 <= k_micro < len(micro):
        return out
    out["ari_micro"] = metrics.ari(metrics.kmeans_labels(vectors, k_micro, seed), micro)
    if pd.isna(coarse).any():
        return out
    k_coarse = len(np.unique(coarse))
    per_group = max(1, round(k_micro / k_coarse))
    out["ari_coarse"] = metrics.ari(metrics.kmeans_labels(vectors, k_coarse, seed), coarse)
    out["ari_two_level"] = metrics.ari(references.two_level_labels(vectors, k_coarse, per_group, seed), micro)
    return out


def _scored(name: str, kind: str, seed: int, v: np.ndarray, extra: dict, planted: pd.DataFrame | None
            ) -> list[dict]:
    """Rows (variant, kind, seed, measure, value): ``extra`` and, with ``planted`` truth,
    the ``planted_scores`` of the vectors ``v``."""
    measures = {**extra, **(planted_scores(v, planted, seed) if planted is not None else {})}
    return [{"variant": name, "kind": kind, "seed": seed, "measure": m, "value": float(val)}
            for m, val in measures.items()]


def _learned(objective: str, seed: int, x: np.ndarray, traits: np.ndarray, trait_mask: np.ndarray,
             train: np.ndarray, scaling, spec: dict, epochs: int, batch_size: int, learning_rate: float,
             lr_step_epochs: int | None, lr_gamma: float, planted: pd.DataFrame | None
             ) -> tuple[list[dict], np.ndarray]:
    """One objective at one seed: trained on the ``train`` rows, scored on every row
    (the held-out loss over the rest); (rows, its vectors)."""
    model = train_encoder(x[train], traits[train], trait_mask[train], scaling, {**spec, "objective": objective},
                          epochs, batch_size, learning_rate, seed, lr_step_epochs, lr_gamma)
    v = embed(model, x)
    with torch.inference_mode():
        held = ~train
        loss, _ = objectives.loss(model, batch_of(*(torch.from_numpy(a[held].astype(np.float32))
                                                   for a in (x, traits, trait_mask))))
    return _scored(objective, "learned", seed, v, {"held_out_loss": float(loss), "dims": v.shape[1]}, planted), v


def compare(customers: pd.DataFrame, x: np.ndarray, traits: np.ndarray, trait_mask: np.ndarray, scaling,
            spec: dict, objective_names: list[str], epochs: int, batch_size: int, learning_rate: float,
            seeds: list[int], train_rows: int | None = None, lr_step_epochs: int | None = None,
            lr_gamma: float = 0.5, jobs: int = 1) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Rows (variant, kind, seed, measure, value) for every objective and every reference
    x seed (a reference's seed is its KMeans seed), and each variant's vectors of the first
    seed (for the downstream tasks).
    ``customers`` has ``split`` and, on generated data, the planted columns; encoders see
    the train split only (at most ``train_rows`` of it); the held-out loss is over the rest.
    The (variant, seed) pairs are independent: ``jobs`` processes share them (joblib), each
    seeded alike, so the rows do not depend on ``jobs``."""
    train = (customers["split"] == "train").to_numpy()
    if train_rows is not None:
        train = capped(train, train_rows, seeds[0])
    planted = customers[[c for c in ("micro_segment", "coarse_group") if c in customers]] \
        if "micro_segment" in customers else None
    refs = references.reference_features(x)
    tasks = [delayed(_scored)(name, "reference", seed, v, {"dims": v.shape[1]}, planted)
             for name, v in refs.items() for seed in seeds]   # the KMeans seed moves a reference's ARI too
    pairs = [(objective, seed) for objective in objective_names for seed in seeds]
    tasks += [delayed(_learned)(objective, seed, x, traits, trait_mask, train, scaling, spec, epochs, batch_size,
                                learning_rate, lr_step_epochs, lr_gamma, planted) for objective, seed in pairs]
    done = Parallel(n_jobs=jobs, batch_size=1)(tasks)   # few, long fits: one per dispatch keeps every worker busy
    scored, learned = done[:len(done) - len(pairs)], done[len(done) - len(pairs):]
    rows, vectors = [r for out in scored for r in out], dict(refs)
    for (objective, seed), (out, v) in zip(pairs, learned):
        rows += out
        if seed == seeds[0]:
            vectors[objective] = v
    return pd.DataFrame(rows, columns=["variant", "kind", "seed", "measure", "value"]), vectors


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, kind, measure): mean, min and max over the seeds."""
    return (frame.groupby(["variant", "kind", "measure"], sort=False)["value"]
            .agg(["mean", "min", "max", "count"]).reset_index())
