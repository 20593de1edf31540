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
    # one row per feature variant ("lstm", "feedforward", "traits"): variant, k, silhouette,
    # davies_bouldin, trait_var_within (share of trait variance left within segments),
    # size_min, size_median, size_max, ari_coarse, ari_micro (NaN without ground truth)
    granularity: pd.DataFrame
    # variant, k, silhouette: the k-selection curve of each variant's segmentation run
    k_curves: pd.DataFrame
    # dataset, task ("default" | "liquidity"), model (e.g. "lstm features", "bespoke gbm"),
    # metric ("roc_auc" | "pr_auc" | "macro_f1"), value, ci_low, ci_high, n_test
    downstream: pd.DataFrame
    # surrogate fidelity: {"r2": float, "r2_per_dim": [..], "inputs": int, "rows": int}
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
    # target, seed, measure, value: this month's vs next month's traits as the LSTM target,
    # both trained alike on the sample per seed (test_mse, ari_*_at_planted_k, downstream)
    targets: pd.DataFrame = field(default_factory=pd.DataFrame)
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
