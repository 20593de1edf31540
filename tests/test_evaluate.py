"""The evaluation's metrics on constructed cases with known answers (no Spark)."""

import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from microseg.evaluate import downstream, encoders, metrics, references, surrogate
from microseg.evaluate.e2e import lstm_predictor
from microseg.evaluate.evaluation import LIFT, PROBE_BESPOKE, PROBE_LSTM, check_claims
from microseg.evaluate.result import Evaluation


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


def test_random_scores_are_near_half_auc_and_base_rate_pr_auc():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    assert abs(metrics.roc_auc(y, rng.random(2000)) - 0.5) < 0.05 and metrics.roc_auc(y, y.astype(float)) == 1.0
    assert abs(metrics.pr_auc(y, rng.random(2000)) - y.mean()) < 0.05     # PR AUC of chance = base rate


def test_macro_f1_of_perfect_and_constant_predictions():
    y = np.array([0, 1, 2, 0, 1, 2])
    assert metrics.macro_f1(y, np.eye(3)[y]) == 1.0
    assert metrics.macro_f1(y, np.eye(3)[np.zeros(6, int)]) == pytest.approx((0.5 + 0 + 0) / 3)


def customers(n=600, seed=0):
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    return pd.DataFrame({
        "loan_default": np.where(np.arange(n) % 3 == 0, np.nan, (signal > 0.8).astype(float)),
        "liquidity_class": np.digitize(signal, [-0.8, 0.0, 0.8]).astype(float),
    }), signal


def test_cv_folds_are_stratified_and_the_same_for_every_model():
    frame, _ = customers()
    seen = {"a": [], "b": []}

    def recorder(name):
        def predict(x_train, y_train, x_test):
            seen[name].append(x_test[:, 0].astype(int))                 # inputs are the row numbers
            return np.full((len(x_test), int(y_train.max()) + 1), 0.5)
        return predict

    rows = np.arange(len(frame), dtype=float)[:, None]
    scores, skipped = downstream.cross_validate(frame, {m: (rows, recorder(m)) for m in seen}, folds=5, repeats=2,
                                                seed=0)
    assert skipped.empty and len(scores) == 2 * (2 + 1) * 10            # models x metrics x splits
    assert all((a == b).all() for a, b in zip(seen["a"], seen["b"]))    # same test rows, same order
    default = seen["a"][:10]                                            # the default task's splits come first
    label = frame["loan_default"]
    for repeat in (default[:5], default[5:]):                           # each repeat partitions the labelled
        assert np.array_equal(np.sort(np.concatenate(repeat)), np.flatnonzero(label.notna()))
    positives = [int(label.iloc[t].sum()) for t in default]
    assert max(positives) - min(positives) <= 1                         # stratified
    assert not np.array_equal(np.sort(default[0]), np.sort(default[5]))   # repeats reshuffle
    assert set(scores["n_positive"].dropna()) == {int(label.sum())}


def test_noise_is_worse_than_signal_and_signal_lifts_noise():
    frame, signal = customers(n=300)
    noise = np.random.default_rng(5).normal(size=(len(frame), 3))
    predict = downstream.tabular_predictor(seed=0, max_iter=10)
    models = {"signal": (signal[:, None], predict), "noise": (noise, predict),
              "noise + signal": (downstream.joined(noise, signal), predict)}
    scores, _ = downstream.cross_validate(frame, models, folds=5, repeats=2, seed=0)
    mean = downstream.summary(scores).set_index(["model", "task", "metric"])["mean"]
    assert mean["signal", "default", "roc_auc"] > 0.95 and abs(mean["noise", "default", "roc_auc"] - 0.5) < 0.15
    vs_signal = downstream.paired(scores, "signal").set_index(["model", "task", "metric"])
    for task, metric in (("default", "roc_auc"), ("default", "pr_auc"), ("liquidity", "macro_f1")):
        assert vs_signal.loc[("noise", task, metric), "diff_high"] < 0
        assert not vs_signal.loc[("noise", task, metric), "held"]
    lift = downstream.paired(scores, "noise").set_index(["model", "task", "metric"])
    assert lift.loc[("noise + signal", "default", "roc_auc"), "diff_low"] > 0          # the lift is real
    assert lift.loc[("noise + signal", "default", "roc_auc"), "held"]


def test_the_linear_probe_reads_one_signal_among_many_noise_columns_fitted_on_training_rows_only():
    frame, signal = customers(n=300)
    rng = np.random.default_rng(6)
    x = np.hstack([signal[:, None] + rng.normal(0, 0.3, (len(frame), 1)), rng.normal(size=(len(frame), 60))])
    x[:, 1:] *= rng.uniform(0.1, 1000, 60)                 # scales apart: only a scaled probe treats them alike
    linear = downstream.linear_predictor(seed=0)
    scores, _ = downstream.cross_validate(frame, {"probe": (x, linear)}, folds=5, repeats=1, seed=0)
    assert downstream.summary(scores).set_index(["model", "task", "metric"])["mean"]["probe", "default", "roc_auc"] > 0.8
    # what a test row gets does not depend on the other test rows (no scaling fitted on them)
    y = frame["loan_default"].to_numpy()
    labelled = np.flatnonzero(~np.isnan(y))
    train, test = labelled[:130], labelled[130:]
    whole = linear(x[train], y[train], x[test])
    np.testing.assert_allclose(linear(x[train], y[train], x[test[:5]]), whole[:5])
    np.testing.assert_allclose(linear(x[train], y[train], x[test][::-1])[::-1], whole)


def test_identical_feature_sets_differ_by_exactly_zero_and_hold():
    frame, signal = customers(n=300)
    predict = downstream.tabular_predictor(seed=0, max_iter=10)
    scores, _ = downstream.cross_validate(frame, {"a": (signal[:, None], predict), "b": (signal[:, None], predict)},
                                          folds=3, repeats=2, seed=1)
    got = downstream.paired(scores, "a")
    assert set(got["model"]) == {"b"} and len(got) == 3 and (got["splits"] == 6).all()
    assert (got[["mean_diff", "diff_low", "diff_high"]] == 0).all().all() and got["held"].all()


def test_corrected_interval_widens_the_plain_t_interval():
    diffs = np.array([0.02, -0.01, 0.03, 0.00, 0.01, 0.04])
    mean, low, high = downstream.corrected_interval(diffs, test_train_ratio=0.0)
    assert (low, high) == pytest.approx(scipy_stats.t.interval(0.95, 5, loc=diffs.mean(), scale=scipy_stats.sem(diffs)))
    _, wide_low, wide_high = downstream.corrected_interval(diffs, test_train_ratio=0.25)
    assert wide_high - wide_low == pytest.approx((high - low) * np.sqrt(1 + 6 * 0.25))


def test_verdict_needs_zero_or_better_inside_a_narrow_enough_interval():
    assert downstream.verdict(-0.02, 0.03)["held"]                      # includes 0, lower end above -0.05
    assert downstream.verdict(0.01, 0.04)["held"]                       # favours the model
    assert not downstream.verdict(-0.06, -0.01)["held"]                 # reference better
    assert not downstream.verdict(-0.20, 0.10)["held"]                  # includes 0 but uselessly wide
    assert downstream.verdict(-0.20, 0.10, margin=0.25)["held"]


def test_bespoke_lstm_learns_a_label_per_fold_from_sequences():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 6, 11)).astype(np.float32)
    y = (x[:, -1, 0] > 0).astype(float)                                 # the label is in the last month
    frame = pd.DataFrame({"loan_default": y, "liquidity_class": np.nan})
    predict = lstm_predictor(([0.0] * 11, [1.0] * 11), hidden=8, epochs=10, seed=0, batch_size=32, learning_rate=0.05)
    scores, skipped = downstream.cross_validate(frame, {"lstm": (x, predict)}, folds=2, repeats=1, seed=0)
    assert list(skipped["task"]) == ["liquidity"]                       # no liquidity labels at all
    assert (scores.loc[scores["metric"] == "roc_auc", "value"] > 0.9).all()


def test_in_memory_training_is_capped_at_train_rows_by_a_seeded_pick():
    rows = np.arange(300) % 3 == 0                                      # 100 training rows
    picked = encoders.capped(rows, 30, seed=1)
    assert picked.sum() == 30 and not (picked & ~rows).any()
    assert np.array_equal(picked, encoders.capped(rows, 30, seed=1))
    assert not np.array_equal(picked, encoders.capped(rows, 30, seed=2))
    assert np.array_equal(encoders.capped(rows, 100, seed=1), rows)     # under the cap: every row
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4, 11)).astype(np.float32)
    y = (x[:, -1, 0] > 0).astype(int)
    fitted = {cap: lstm_predictor(([0.0] * 11, [1.0] * 11), hidden=4, epochs=2, seed=0, max_rows=cap)(x, y, x[:5])
              for cap in (None, 80, 40)}
    np.testing.assert_array_equal(fitted[None], fitted[80])             # the cap is not reached: the same model
    assert not np.allclose(fitted[None], fitted[40])                    # it is: trained on 40 of the 80


def test_in_memory_training_follows_the_configured_rate_schedule():
    import torch

    from microseg.evaluate.fit import fit

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 3)).astype(np.float32), rng.normal(size=(64, 1)).astype(np.float32)

    def trained(epochs: int, **schedule) -> np.ndarray:
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        fit(model, (x, y), lambda m, xb, yb: ((m(xb) - yb) ** 2).mean(), epochs, 16, 0.05, 0, **schedule)
        return model.weight.detach().numpy().copy()

    frozen = {"lr_step_epochs": 1, "lr_gamma": 1e-12}                   # after epoch 1 the rate is ~0
    np.testing.assert_allclose(trained(1, **frozen), trained(4, **frozen), atol=1e-8)
    assert not np.allclose(trained(1), trained(4))                      # a constant rate keeps moving
    assert not np.allclose(trained(4, lr_step_epochs=2, lr_gamma=0.3), trained(4))


def test_a_task_without_enough_labels_per_class_is_skipped():
    frame, signal = customers()
    frame["loan_default"] = 0.0
    frame.loc[:2, "liquidity_class"] = 9.0                              # a class of 3 customers, 5 folds
    scores, skipped = downstream.cross_validate(frame, {"m": (signal[:, None], downstream.tabular_predictor(0, 5))},
                                                folds=5, repeats=1, seed=0)
    assert scores.empty and list(skipped["task"]) == ["default", "liquidity"]
    assert "1 class" in skipped["reason"].iloc[0] and "3 customers" in skipped["reason"].iloc[1]


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


def granularity(lstm, ff, traits, ff_coarse=0.95, coarse=0.99):
    rows = []
    for v, micro, c in (("lstm", lstm, coarse), ("feedforward", ff, ff_coarse), ("traits", traits, 0.9)):
        rows.append({"variant": v, "ari_micro": micro, "ari_micro_at_planted_k": micro, "ari_coarse_at_planted_k": c,
                     "degenerate": False, "degenerate_reason": None, "largest_share": 0.3, "smallest_size": 40})
    return pd.DataFrame(rows)


def objective_rows(static, flat, hand, counted, weighted=0.6):
    return pd.DataFrame([{"variant": n, "kind": "reference", "seed": 1, "measure": "ari_micro", "value": v}
                         for n, v in zip(references.NAMES, (static, flat, hand, counted, weighted), strict=True)])


def paired_rows(low, high, lift_low=-0.01):
    return pd.DataFrame([
        {"model": "LSTM features", "reference": references.BESPOKE, "task": "default", "metric": "roc_auc",
         "mean_diff": (low + high) / 2,
         "diff_low": low, "diff_high": high, "splits": 15, "margin": 0.02,
         "held": downstream.verdict(low, high, 0.02)["held"]},
        {"model": LIFT, "reference": references.BESPOKE, "task": "default", "metric": "roc_auc",
         "mean_diff": lift_low + 0.01,
         "diff_low": lift_low, "diff_high": lift_low + 0.02, "splits": 15, "margin": 0.02, "held": True}])


def test_the_lstm_probe_is_paired_with_the_bespoke_gbm_and_with_the_bespoke_probe():
    from microseg.evaluate.evaluation import _paired

    level = {references.BESPOKE: 0.78, "LSTM features": 0.74, PROBE_LSTM: 0.77, PROBE_BESPOKE: 0.79}
    scores = pd.DataFrame([{"model": m, "task": "default", "metric": "roc_auc", "repeat": r, "fold": f,
                            "value": v + 0.01 * ((r * 5 + f) % 3), "n_test": 20, "n_train": 80}
                           for m, v in level.items() for r in range(2) for f in range(5)])
    got = {(r.model, r.reference): round(r.mean_diff, 6) for r in _paired(scores).itertuples()}
    assert got == {("LSTM features", references.BESPOKE): -0.04, (PROBE_LSTM, references.BESPOKE): -0.01,
                   (PROBE_LSTM, PROBE_BESPOKE): -0.02}
    assert _paired(scores.iloc[:0]).empty


def test_the_probe_claim_compares_the_lstm_probe_with_the_bespoke_probe():
    probe = lambda low, high: pd.DataFrame([{"model": PROBE_LSTM, "reference": PROBE_BESPOKE, "task": "default",  # noqa: E731
                                             "metric": "roc_auc", "mean_diff": (low + high) / 2, "diff_low": low,
                                             "diff_high": high, "splits": 10, "margin": 0.02,
                                             "held": downstream.verdict(low, high, 0.02)["held"]}])
    against_gbm = probe(-0.01, 0.01).assign(reference=references.BESPOKE, held=True)   # not the like-for-like row
    for (low, high), held in (((-0.01, 0.02), True), ((-0.06, 0.03), False), ((-0.05, -0.01), False)):
        paired = pd.concat([paired_rows(-0.01, 0.01), against_gbm, probe(low, high)], ignore_index=True)
        claims = check_claims(granularity(0.5, 0.3, 0.2), objective_rows(0.2, 0.4, 0.45, 0.55), paired, "1 shape")
        got = claims[claims["claim"].str.startswith("With the same linear probe")]
        assert got["held"].tolist() == [held] and f"{(low + high) / 2:+.3f}" in got["evidence"].iloc[0]
    no_probe = check_claims(granularity(0.5, 0.3, 0.2), objective_rows(0.2, 0.4, 0.45, 0.55),
                            paired_rows(-0.01, 0.01), "1 shape")
    assert not no_probe["claim"].str.startswith("With the same linear probe").any()


def test_claims_follow_the_numbers():
    claims = check_claims(granularity(0.5, 0.3, 0.2), objective_rows(0.2, 0.4, 0.45, 0.55),
                          paired_rows(-0.01, 0.01), "1 shape").set_index("claim")["held"]
    got = claims.tolist()
    assert got[:2] == [True, True]                          # beats simple refs, >= hand-made on class shares
    assert got[2] is False                                  # below hand-made on count shares (0.5 < 0.55)
    assert got[3] is False                                  # below them reliability-weighted (0.5 < 0.6)
    assert got[4:7] == [True, True, True]                   # coarse, paper x2
    assert got[7] is True                                   # not degenerate
    assert got[8] is True and got[9] is False               # as good as bespoke; the lift's interval holds 0
    assert got[10] is None                                  # no liquidity results: not checkable
    worse = check_claims(granularity(0.41, 0.45, 0.2, coarse=0.9), objective_rows(0.2, 0.4, 0.6, 0.3, 0.35),
                         paired_rows(-0.08, -0.01, lift_low=0.01), "1 shape")["held"].tolist()
    assert worse[:6] == [False, False, True, True, False, False]  # 0.41 does not clear 0.40 by the margin
    assert worse[8] is False and worse[9] is True
    no_truth = check_claims(granularity(np.nan, np.nan, np.nan), pd.DataFrame(columns=["variant", "kind", "seed",
                            "measure", "value"]), paired_rows(-0.01, 0.01), "1 shape")
    assert no_truth["held"].iloc[0] is None and no_truth["held"].iloc[1] is None


def test_evaluation_json_is_strict_and_round_trips():
    ev = Evaluation(granularity=granularity(np.nan, 0.3, 0.2), k_curves=pd.DataFrame(), objectives=pd.DataFrame(),
                    downstream=pd.DataFrame(), paired=paired_rows(-0.01, 0.01), surrogate={"r2": float("nan")},
                    drivers=pd.DataFrame(), map_points=pd.DataFrame(), profiles=pd.DataFrame(),
                    spend_mix=pd.DataFrame(), claims=pd.DataFrame(), meta={"a": 1})
    import json

    text = ev.to_json()
    back = Evaluation.from_dict(json.loads(text))              # strict JSON: no bare NaN tokens
    assert "NaN" not in text and back.meta == {"a": 1} and back.surrogate["r2"] is None
    assert np.isnan(back.granularity.loc[0, "ari_micro"]) and back.granularity.loc[1, "ari_micro"] == 0.3


def planted_sequences(n_per=40, months=12, seed=0):
    """Two coarse groups (which class dominates) x two micro-segments (steady, or a drift
    from class 0 to class 1); features in the pipeline's layout with C = 3 classes."""
    rng = np.random.default_rng(seed)
    c, rows, truth = 3, [], []
    for group in range(2):
        for micro in range(2):
            for _ in range(n_per):
                base = np.array([0.45, 0.45, 0.1]) if group == 0 else np.array([0.25, 0.25, 0.5])
                drift = (np.linspace(-1, 1, months) if micro else np.zeros(months))[:, None] * 0.8 * np.array([1, -1, 0])
                shares = np.clip(base + drift * min(base[0], base[1]) + rng.normal(0, 0.02, (months, c)), 0, None)
                shares /= shares.sum(1, keepdims=True)
                x = np.zeros((months, 3 * c + 5), np.float32)
                x[:, :c], x[:, c:2 * c], x[:, 2 * c:3 * c] = np.log1p(100 * shares), shares, np.log1p(3 * shares)
                x[:, -5:-2] = [7.0, 6.5, 8.0]
                angle = np.arange(months) * 2 * np.pi / 12                     # from January
                x[:, -2], x[:, -1] = np.sin(angle), np.cos(angle)
                rows.append(x)
                truth.append((group, 2 * group + micro))
    t = np.array(truth)
    return np.stack(rows), pd.DataFrame({"coarse_group": t[:, 0], "micro_segment": t[:, 1]})


def test_references_see_mix_and_dynamics_from_the_same_features():
    x, truth = planted_sequences()
    refs = references.reference_features(x)
    assert set(refs) == set(references.NAMES)
    assert refs["static shares"].shape == (len(x), 3) and refs["flattened monthly shares"].shape == (len(x), 36)
    np.testing.assert_allclose(refs["static shares"], x[:, :, 3:6].mean(1), atol=1e-6)
    static = encoders.planted_scores(refs["static shares"], truth, 0)
    temporal = encoders.planted_scores(refs["hand-made temporal"], truth, 0)
    assert static["ari_coarse"] == pytest.approx(1.0) and static["ari_micro"] < 0.6   # the mix: groups only
    assert temporal["ari_micro"] > 0.9 and temporal["ari_two_level"] > 0.9            # the drift: micro too


def test_bespoke_aggregates_invert_the_features():
    x, _ = planted_sequences(n_per=2)
    x[0, :4] = 0.0                                           # a late joiner: 4 months before the history
    agg, names = references.bespoke_aggregates(x)
    col = dict(zip(names, agg[0]))
    assert col["active_months"] == 8 and col["recency_months"] == 0
    assert col["income_mean"] == pytest.approx(np.expm1(7.0), rel=1e-5)
    assert col["balance_min"] == pytest.approx(np.expm1(8.0), rel=1e-5)
    assert agg[0, len(names) - 3:].sum() == pytest.approx(1.0)     # the window's class shares


def test_objective_comparison_trains_each_objective_per_seed_beside_the_references():
    x, truth = planted_sequences(n_per=16, months=8)
    traits = np.repeat(x[:, :, 3:4], 5, axis=2)
    customers = truth.assign(split=np.where(np.arange(len(x)) % 4 == 0, "test", "train"))
    scaling = (x.reshape(-1, x.shape[2]).mean(0).tolist(), (x.reshape(-1, x.shape[2]).std(0) + 1e-3).tolist())
    spec = {"kind": "lstm", "n_features": x.shape[2], "months": 8, "hidden": 4}
    rows, vectors = encoders.compare(customers, x, traits, np.ones(x.shape[:2], np.float32), scaling, spec,
                                     ["next", "shape"], epochs=2, batch_size=16, learning_rate=0.01, seeds=[1, 2])
    learned = rows[rows["kind"] == "learned"]
    assert set(learned["variant"]) == {"next", "shape"} and set(learned["seed"]) == {1, 2}
    assert set(rows["measure"]) >= {"ari_micro", "ari_coarse", "ari_two_level", "held_out_loss"}
    assert vectors["shape"].shape == (len(x), 4) and set(vectors) >= set(references.NAMES)
    summary = encoders.summary(rows).set_index(["variant", "measure"])
    assert summary.loc[("next", "ari_micro"), "count"] == 2 and summary.loc[("static shares", "ari_micro"), "count"] == 2
    in_two, vectors_in_two = encoders.compare(customers, x, traits, np.ones(x.shape[:2], np.float32), scaling, spec,
                                              ["next", "shape"], epochs=2, batch_size=16, learning_rate=0.01,
                                              seeds=[1, 2], jobs=2)
    pd.testing.assert_frame_equal(in_two, rows)                         # two processes, the same numbers
    assert all(np.array_equal(vectors_in_two[k], vectors[k]) for k in vectors)


def test_cross_validation_in_two_processes_scores_exactly_as_in_one(tmp_path):
    frame, signal = customers(n=300)
    gbm = downstream.tabular_predictor(seed=0, max_iter=10)

    def where(x_train, y_train, x_test):                                 # records the process that fits
        (tmp_path / str(os.getpid())).touch()
        return gbm(x_train, y_train, x_test)

    noise = np.random.default_rng(5).normal(size=(len(frame), 3))
    models = {"signal": (signal[:, None], where), "noise": (noise, downstream.linear_predictor(seed=0))}
    one, _ = downstream.cross_validate(frame, models, folds=3, repeats=2, seed=0)
    pids = {p.name for p in tmp_path.iterdir()}
    two, _ = downstream.cross_validate(frame, models, folds=3, repeats=2, seed=0, jobs=2)
    pd.testing.assert_frame_equal(two.drop(columns="seconds"), one.drop(columns="seconds"))
    assert pids == {str(os.getpid())} and len({p.name for p in tmp_path.iterdir()} - pids) == 2
