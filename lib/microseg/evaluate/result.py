"""What the evaluation hands to the report: small pandas tables, one per question.

Every frame is small by construction (one row per variant, segment, model or sampled
point), so it can be rendered, logged to MLflow and stored as JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields

import pandas as pd


@dataclass
class Evaluation:
    # one row per feature variant ("lstm", "feedforward", "traits"): variant, k, k_coarse,
    # silhouette, davies_bouldin, trait_var_within (share of trait variance left within
    # segments), size_min, size_median, size_max, largest_share, smallest_size, degenerate,
    # degenerate_reason, ari_coarse, ari_micro (the pipeline's segments), and at the planted
    # k: ari_micro_at_planted_k, ari_coarse_at_planted_k, ari_two_level_at_planted_k (NaN
    # without ground truth)
    granularity: pd.DataFrame
    # variant, k, silhouette: the k-selection curve of each variant's segmentation run
    k_curves: pd.DataFrame
    # variant (an objective or a reference), kind ("learned" | "reference"), seed, measure
    # (ari_micro, ari_coarse, ari_two_level at the planted k; held_out_loss; dims), value
    objectives: pd.DataFrame
    # repeated stratified k-fold per (model, task, metric): mean, sd, splits, n_labelled,
    # n_positive, seconds_per_fold, dataset
    downstream: pd.DataFrame
    # every model minus the bespoke GBM on the same folds: mean_diff, sd_diff, diff_low,
    # diff_high (corrected resampled t interval), splits, margin, held
    paired: pd.DataFrame
    # surrogate fidelity: {"r2": float, "r2_per_dim": [..], "inputs": int, "rows": int,
    # "min_r2": float, and "unexplained": why no drivers are named when r2 is below min_r2}
    surrogate: dict
    # segment, rank, feature, score: the inputs that drive each segment most (LSTM)
    drivers: pd.DataFrame
    # x, y, segment, coarse_segment, variant: a 2-D map (t-SNE) of a sample
    map_points: pd.DataFrame
    # one row per segment of the LSTM variant: segment, coarse_segment, customers, the five
    # traits, default_rate, liquidity_index
    profiles: pd.DataFrame
    # segment, txn_class, share: spend mix per segment (LSTM variant)
    spend_mix: pd.DataFrame
    # claim, held (bool or None when not checkable), evidence (one sentence with numbers)
    claims: pd.DataFrame
    # run facts: as_of, dataset, model versions, table versions, code version, customers
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> Evaluation:
        """The inverse of ``to_json`` (after ``json.loads``)."""
        kinds = {f.name: f.type for f in fields(cls)}
        return cls(**{name: pd.DataFrame(value) if kinds[name] == "pd.DataFrame" else value
                      for name, value in data.items()})

    def to_json(self) -> str:
        """Strict JSON: NaN becomes null."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, pd.DataFrame):
                value = value.astype(object).where(value.notna(), None).to_dict(orient="records")
            out[f.name] = _no_nan(value)
        return json.dumps(out, default=str, indent=1, allow_nan=False)


def _no_nan(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value
