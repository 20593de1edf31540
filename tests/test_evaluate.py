"""The evaluation's metrics on constructed cases with known answers (no Spark)."""

import numpy as np
import pandas as pd
import pytest
import torch

from microseg.evaluate import downstream, metrics, surrogate, targets
from microseg.evaluate.evaluation import check_claims
from microseg.evaluate.result import Evaluation
from microseg.model.train import masked_mse


def blobs(k=4, per=50, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(k) * 10
    x = np.vstack([c + rng.normal(0, spread, (per, k)) for c in centres])
    return x, np.repeat(np.arange(k), per)


def test_perfectly_separated_clusters_score_as_such():
    x, labels = blobs()
    q = metrics.cluster_quality(x, labels, seed=0)
    assert q["silhouette"] > 0.95 and q["davies_bouldin"] < 0.05
    assert metrics.ari(labels, labels) == 1.0
    assert metrics.ari((labels + 1) % 4, labels) == 1.0                 # names do not matter
    assert metrics.within_variance_share(x, labels) < 0.001
    assert metrics.ari(metrics.kmeans_labels(x, 4, seed=0), labels) == 1.0


def test_random_labels_score_near_zero():
    x, labels = blobs()
    shuffled = np.random.default_rng(1).permutation(labels)
    assert abs(metrics.ari(shuffled, labels)) < 0.05
    assert metrics.within_variance_share(x, shuffled) > 0.9
    assert np.isnan(metrics.cluster_quality(x, np.zeros(len(x)), seed=0)["silhouette"])


def test_random_classifier_is_near_half_auc_and_perfect_is_one():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    value, low, high = metrics.bootstrap_ci(metrics.roc_auc, y, rng.random(2000), n=200, seed=0)
    assert abs(value - 0.5) < 0.05 and low < 0.5 < high
    assert metrics.bootstrap_ci(metrics.roc_auc, y, y.astype(float), n=50, seed=0) == (1.0, 1.0, 1.0)
    pr = metrics.pr_auc(y, rng.random(2000))
    assert abs(pr - y.mean()) < 0.05                                    # PR AUC of chance = base rate


def test_bootstrap_interval_brackets_the_value_and_narrows_with_more_rows():
    rng = np.random.default_rng(0)

    def width(n):
        y = rng.integers(0, 2, n)
        score = y + rng.normal(0, 1.0, n)
        value, low, high = metrics.bootstrap_ci(metrics.roc_auc, y, score, n=200, seed=1)
        assert low <= value <= high
        return high - low

    assert width(4000) < width(200)


def test_macro_f1_of_perfect_and_constant_predictions():
    y = np.array([0, 1, 2, 0, 1, 2])
    assert metrics.macro_f1(y, np.eye(3)[y]) == 1.0
    assert metrics.macro_f1(y, np.eye(3)[np.zeros(6, int)]) == pytest.approx((0.5 + 0 + 0) / 3)


def customers(n=600, seed=0):
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    return pd.DataFrame({
        "split": np.where(np.arange(n) % 4 == 0, "test", "train"),
        "loan_default": np.where(np.arange(n) % 3 == 0, np.nan, (signal > 0.8).astype(float)),
        "liquidity_class": np.digitize(signal, [-0.8, 0.0, 0.8]).astype(float),
    }), signal


def test_downstream_ranks_an_informative_model_above_noise():
    frame, signal = customers()
    noise = np.random.default_rng(5).normal(size=(len(frame), 3))
    predict = downstream.tabular_predictor(seed=0)
    out = downstream.compare(frame, {"informative": (signal[:, None], predict), "noise": (noise, predict)},
                             n_boot=50, seed=0)
    got = out.set_index(["model", "task", "metric"])["value"]
    assert got["informative", "default", "roc_auc"] > 0.95
    assert abs(got["noise", "default", "roc_auc"] - 0.5) < 0.15
    assert got["informative", "liquidity", "macro_f1"] > 0.85 > got["noise", "liquidity", "macro_f1"]
    labelled = frame["loan_default"].notna() & (frame["split"] == "test")
    assert set(out.loc[out.task == "default", "n_test"]) == {int(labelled.sum())}   # held-out, labelled rows only


def test_downstream_skips_a_task_without_two_classes():
    frame, signal = customers()
    frame["loan_default"] = 0.0
    out = downstream.compare(frame, {"m": (signal[:, None], downstream.tabular_predictor(0))}, n_boot=10, seed=0)
    assert set(out["task"]) == {"liquidity"}


def test_linear_surrogate_recovers_a_linear_hidden_state_and_its_driver():
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(400, 6))
    hidden = inputs @ rng.normal(size=(6, 4))
    hidden[:, :] += 5 * inputs[:, [2]]                  # input 2 dominates every hidden unit
    segments = (inputs[:, 2] > 0).astype(int)           # and it is what splits the segments
    train = np.arange(400) < 300
    model, fidelity = surrogate.fit(inputs, hidden, train, alpha=1e-3)
    assert fidelity["r2"] > 0.999 and len(fidelity["r2_per_dim"]) == 4
    top = surrogate.drivers(model, inputs, segments, [f"f{i}" for i in range(6)], top=1)
    assert list(top["feature"]) == ["f2", "f2"] and (top["score"] > 0).all()


def test_window_inputs_average_only_active_months():
    x = np.zeros((1, 4, 2))
    x[0, 2:] = [[1.0, 2.0], [3.0, 4.0]]
    active = np.array([[0, 0, 1, 1]], dtype=float)
    inputs, names = surrogate.window_inputs(x, active, ["a", "b"], recent=1)
    assert inputs.tolist() == [[2.0, 3.0, 3.0, 4.0]] and names[0] == "a (window mean)"


def granularity(lstm, ff, traits, ff_coarse=0.9):
    return pd.DataFrame([
        {"variant": "lstm", "ari_micro": lstm, "ari_coarse": 0.9, "ari_micro_at_planted_k": lstm},
        {"variant": "feedforward", "ari_micro": ff, "ari_coarse": ff_coarse, "ari_micro_at_planted_k": ff},
        {"variant": "traits", "ari_micro": traits, "ari_coarse": 0.9, "ari_micro_at_planted_k": traits}])


def results(lstm_high, bespoke):
    return pd.DataFrame([
        {"model": "LSTM features", "task": "default", "metric": "roc_auc", "value": lstm_high - 0.1,
         "ci_low": lstm_high - 0.2, "ci_high": lstm_high},
        {"model": "bespoke GBM (RFM, class shares, balances)", "task": "default", "metric": "roc_auc",
         "value": bespoke, "ci_low": bespoke - 0.1, "ci_high": bespoke + 0.1}])


def test_claims_follow_the_numbers():
    held = check_claims(granularity(0.8, 0.3, 0.2), results(0.8, 0.75)).set_index("claim")["held"]
    assert held.iloc[0] is True and held.iloc[2] is True and held.iloc[3] is True
    assert held.iloc[4] is None                                         # no liquidity results: n/a
    held = check_claims(granularity(0.2, 0.3, 0.2, ff_coarse=0.1), results(0.6, 0.8)).set_index("claim")["held"]
    assert held.iloc[0] is False and held.iloc[2] is False and held.iloc[3] is False
    no_truth = check_claims(granularity(np.nan, np.nan, np.nan), results(0.8, 0.7))
    assert no_truth["held"].iloc[0] is None


def test_evaluation_json_is_strict_and_round_trips():
    ev = Evaluation(granularity=granularity(np.nan, 0.3, 0.2), k_curves=pd.DataFrame(), downstream=results(0.8, 0.7),
                    surrogate={"r2": float("nan")}, drivers=pd.DataFrame(), map_points=pd.DataFrame(),
                    profiles=pd.DataFrame(), spend_mix=pd.DataFrame(), claims=pd.DataFrame(), meta={"a": 1})
    import json

    text = ev.to_json()
    back = Evaluation.from_dict(json.loads(text))              # strict JSON: no bare NaN tokens
    assert "NaN" not in text and back.meta == {"a": 1} and back.surrogate["r2"] is None
    assert np.isnan(back.granularity.loc[0, "ari_micro"]) and back.granularity.loc[1, "ari_micro"] == 0.3


def test_monthly_targets_and_their_next_month_shift():
    cells = pd.Series([[{"t": 0, "v": [1.0] * 5}, {"t": 2, "v": [3.0] * 5}], None])
    y, mask = targets.monthly_targets(cells, months=3)
    assert y.shape == (2, 3, 5) and mask.tolist() == [[1, 0, 1], [0, 0, 0]]
    assert y[0, :, 0].tolist() == [1.0, 0.0, 3.0]
    now, now_mask = targets.shifted(y, mask, "current")
    assert now is y and now_mask is mask
    nxt, nxt_mask = targets.shifted(y, mask, "next")
    assert nxt[0, :, 0].tolist() == [0.0, 3.0, 0.0]                  # month t learns month t+1
    assert nxt_mask[0].tolist() == [0, 1, 0]                          # the last month has no target


def test_target_encoder_learns_a_masked_target():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 6, 3)).astype(np.float32)
    y = np.repeat(x[:, :, :1], 5, axis=2)                             # traits = the first feature
    mask = (rng.random((256, 6)) > 0.3).astype(np.float32)
    scaling = ([0.0] * 3, [1.0] * 3)
    spec = {"kind": "lstm", "n_features": 3, "hidden": 8, "layers": 1, "dropout": 0.0, "n_targets": 5}
    before = targets.train_encoder(x, y, mask, scaling, spec, epochs=1, batch_size=64, learning_rate=0.0, seed=0)
    after = targets.train_encoder(x, y, mask, scaling, spec, epochs=20, batch_size=64, learning_rate=0.01, seed=0)
    def loss(model):
        with torch.inference_mode():
            return float(masked_mse(model(torch.from_numpy(x)), torch.from_numpy(y), torch.from_numpy(mask)))

    assert loss(after) < 0.2 * loss(before)


def test_target_summary_is_mean_and_range_over_seeds():
    frame = pd.DataFrame({"target": ["next"] * 3 + ["current"], "seed": [1, 2, 3, 1],
                          "measure": ["ari"] * 4, "value": [0.2, 0.4, 0.9, 0.5]})
    got = targets.summary(frame).set_index("target")
    assert got.loc["next", "mean"] == pytest.approx(0.5)
    assert (got.loc["next", "min"], got.loc["next", "max"], got.loc["next", "count"]) == (0.2, 0.9, 3)
    assert got.loc["current", "count"] == 1
