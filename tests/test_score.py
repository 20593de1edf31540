import numpy as np
import pandas as pd
import pytest
import torch

from microseg.config import SegmentConfig
from microseg.model.networks import LSTMEncoder, batch_of
from microseg.model.train import state_bytes
from microseg.score import segment
from microseg.score.embed import embed_customers


def test_udf_embeddings_equal_the_plain_model(spark):
    torch.manual_seed(0)
    t, f = 6, 11                                      # 2 classes
    model = LSTMEncoder({"n_features": f, "hidden": 8, "months": t, "objective": "shape"})
    model.set_scaling(np.arange(f), np.full(f, 2.0))
    model.eval()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, t, f)).astype("float32")
    x[:10, :2] = 0.0                                  # short histories: padding the encoder skips
    df = spark.createDataFrame(
        [(f"C{i}", x[i].ravel().tolist()) for i in range(50)], "customer_id string, features array<float>"
    ).selectExpr("*", "date'2024-03-01' as as_of").repartition(3)
    out = embed_customers(df, state_bytes(model), model.spec, "7")
    rows = {r.customer_id: r for r in out.collect()}
    assert {r.model_version for r in rows.values()} == {"7"}
    with torch.no_grad():
        expected = model.embed(torch.from_numpy(x)).numpy()
        state = model.encode(batch_of(torch.from_numpy(x)))[1].numpy()
    got = np.stack([rows[f"C{i}"].embedding for i in range(50)])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    got_state = np.stack([rows[f"C{i}"].state for i in range(50)])   # the plain state, beside the shape metric's map
    np.testing.assert_allclose(got_state, state, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got_state @ model.shape_metric().numpy(), expected, rtol=0, atol=1e-5)
    assert np.abs(got_state - got).max() > 1e-3


def _frame(spark, points):
    rows = [(f"C{i}", [float(v) for v in p]) for i, p in enumerate(points)]
    return spark.createDataFrame(rows, "customer_id string, embedding array<float>").selectExpr(
        "*", "date'2024-03-01' as as_of", "'1' as model_version")


def _labels(df):
    return {r.customer_id: (r.coarse_segment, r.segment, r.distance) for r in df.collect()}


def test_assign_takes_the_nearest_micro_centroid_inside_the_nearest_coarse_segment(spark):
    seg = segment.Segmentation(coarse=np.array([[0.0, 0.0], [10.0, 0.0]]),
                               micro=np.array([[0.0, 0.0], [2.0, 0.0], [6.0, 0.0], [10.0, 0.0]]),
                               parent=np.array([0, 0, 1, 1]))
    got = _labels(segment.assign(_frame(spark, [[4.9, 0.0], [1.0, 1.0], [9.0, 0.0]]), seg))
    assert got["C0"] == (0, 1, pytest.approx(2.9))     # micro 2 at (6, 0) is nearer, but in coarse 1
    assert got["C1"] == (0, 0, pytest.approx(np.sqrt(2)))
    assert got["C2"] == (1, 3, pytest.approx(1.0))


# three coarse blobs 100 apart, with 2, 3 and 4 sub-blobs 10 apart inside
PLANTED = [[0, 0, 0, 0], [100, 0, 0, 0], [0, 100, 0, 0]]
SUBS = [[[0, 0, 0, 0], [10, 0, 0, 0]],
        [[0, 0, 0, 0], [10, 0, 0, 0], [5, 8.66, 0, 0]],
        [[0, 0, 0, 0], [10, 0, 0, 0], [0, 10, 0, 0], [10, 10, 0, 0]]]


def _two_levels(per=40):
    rng = np.random.default_rng(0)
    points, coarse, micro = [], [], []
    for c, (center, subs) in enumerate(zip(PLANTED, SUBS)):
        for s in subs:
            points += list(np.add(center, s) + rng.normal(scale=1.0, size=(per, 4)))
            coarse += [c] * per
            micro += [len(set(micro))] * per
    return np.array(points), np.array(coarse), np.array(micro)


def _seg_cfg(cfg, **update):
    return cfg.segment.model_copy(update={"k": None, "coarse_k_grid": [2, 3, 4], "micro_k_grid": [2, 3, 4, 5],
                                          **update})


def test_fit_recovers_planted_coarse_and_micro_segments(spark, cfg):
    from sklearn.metrics import adjusted_rand_score

    points, coarse, micro = _two_levels()
    df = _frame(spark, points)
    seg = segment.fit(df, _seg_cfg(cfg), 1)
    assert set(seg.coarse_curve) == {2, 3, 4} and max(seg.coarse_curve, key=seg.coarse_curve.get) == 3
    assert sorted(seg.micro_k.values()) == [2, 3, 4] and len(seg.micro) == 9
    got = _labels(segment.assign(df, seg))
    order = [got[f"C{i}"] for i in range(len(points))]
    assert adjusted_rand_score(coarse, [c for c, _, _ in order]) >= 0.9
    assert adjusted_rand_score(micro, [m for _, m, _ in order]) >= 0.9
    assert all(seg.parent[m] == c for c, m, _ in order)          # each micro id lies in its coarse segment
    for c, k in seg.micro_k.items():                              # the default criterion: the lowest BIC
        assert seg.micro_bic[c][k] == min(seg.micro_bic[c].values()) and seg.micro_curves[c][k] > 0.25


def test_bic_finds_the_micro_segments_that_silhouette_merges(spark, cfg):
    """Six Gaussian micro-segments in two groups of three (groups 10 apart, members 3.5 from
    the group's middle): silhouette picks the two groups; BIC, the default, the six."""
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(0)
    centers = [np.eye(6)[0] * 10 * g + np.eye(6)[1 + j] * 3.5 for g in range(2) for j in range(3)]
    points = np.vstack([c + rng.normal(size=(60, 6)) for c in centers])
    planted = np.repeat(np.arange(6), 60)
    df = _frame(spark, points)
    got = {}
    for criterion in ("silhouette", "bic"):
        seg = segment.fit(df, _seg_cfg(cfg, coarse_k=1, micro_k_grid=list(range(2, 9)),
                                       micro_k_criterion=criterion), 1)
        labels = _labels(segment.assign(df, seg))
        got[criterion] = (len(seg.micro), adjusted_rand_score(planted, [labels[f"C{i}"][1] for i in range(360)]))
    assert got["silhouette"][0] == 2 and got["bic"][0] == 6, got
    assert got["bic"][1] >= 0.9 > got["silhouette"][1], got


def test_stored_centroids_reproduce_the_fitted_segments(spark, cfg):
    points, _, _ = _two_levels(per=20)
    df = _frame(spark, points)
    seg = segment.fit(df, _seg_cfg(cfg, k=2), 3)                   # fixed: two micro-segments per coarse one
    table = segment.centroid_table(spark, seg, "1")
    rows = table.collect()
    assert sorted((r.level, r.segment, r.coarse_segment) for r in rows) == sorted(
        [("coarse", c, c) for c in range(len(seg.coarse))]
        + [("micro", m, int(p)) for m, p in enumerate(seg.parent)])
    assert _labels(segment.assign(df, segment.stored(rows))) == _labels(segment.assign(df, seg))


def _sizes(df):
    return df.groupBy("segment", "coarse_segment").count().withColumnRenamed("count", "customers").toPandas()


def test_one_huge_blob_and_two_outliers_is_flagged_degenerate(spark, cfg):
    rng = np.random.default_rng(1)
    points = np.vstack([rng.normal(size=(300, 4)), [[80, 80, 80, 80], [-80, 80, -80, 80]]])
    df = _frame(spark, points)
    seg_cfg = _seg_cfg(cfg)
    flags = segment.degeneracy(_sizes(segment.assign(df, segment.fit(df, seg_cfg, 1))), seg_cfg)
    assert flags["degenerate"] and flags["min_size"] == 5
    assert flags["largest_share"] > 0.8 or flags["smallest_size"] < 5
    assert "max_share" in flags["degenerate_reason"] or "min_size" in flags["degenerate_reason"]


def test_degeneracy_names_the_level_and_segment():
    seg_cfg = SegmentConfig(min_size=3, max_share=0.8)
    sizes = pd.DataFrame({"segment": [0, 1, 2], "coarse_segment": [0, 0, 1], "customers": [50, 40, 2]})
    flags = segment.degeneracy(sizes, seg_cfg)
    assert flags == {"largest_share": pytest.approx(90 / 92), "smallest_size": 2, "min_size": 3, "degenerate": True,
                     "degenerate_reason": "coarse segment 0 holds 98% of the customers (max_share 0.8); "
                                          "coarse segment 1 has 2 customers (min_size 3); "
                                          "micro segment 2 has 2 customers (min_size 3)"}
    balanced = pd.DataFrame({"segment": [0, 1, 2], "coarse_segment": [0, 0, 1], "customers": [30, 30, 40]})
    assert not segment.degeneracy(balanced, seg_cfg)["degenerate"]


def test_constant_vectors_give_one_segment_and_say_why(spark, cfg):
    df = _frame(spark, [[1.0, 2.0, 3.0]] * 50)
    seg = segment.fit(df, _seg_cfg(cfg), 1)
    assert len(seg.coarse) == len(seg.micro) == 1
    assert seg.messages == ["coarse: 50 sampled vectors, 1 distinct: one segment",
                            "coarse 0: 50 sampled vectors, 1 distinct: one segment"]
    assert set(_labels(segment.assign(df, seg)).values()) == {(0, 0, 0.0)}


@pytest.mark.parametrize("algorithm", ["kmeans", "bisecting_kmeans"])
def test_fewer_distinct_vectors_than_a_k_skips_that_k(spark, cfg, algorithm):
    df = _frame(spark, [[0.0, 0.0], [50.0, 0.0], [0.0, 50.0], [50.0, 50.0]] * 20)
    seg = segment.fit(df, _seg_cfg(cfg, coarse_k_grid=[2, 3, 5, 6], algorithm=algorithm), 1)
    assert set(seg.coarse_curve) == {2, 3} and len(seg.micro) == 4
    assert "coarse: only 4 distinct vectors: k > 4 not tried" in seg.messages


def test_profiles_sizes_traits_spend_mix_and_labels(spark):
    segs = spark.createDataFrame([("a", 0, 0), ("b", 0, 0), ("c", 1, 0)],
                                 "customer_id string, segment int, coarse_segment int"
                                 ).selectExpr("*", "date'2024-02-01' as as_of")
    pers = spark.createDataFrame([("a", "2024-01-01", 0.2), ("a", "2024-02-01", 0.4), ("b", "2024-02-01", 0.6),
                                  ("c", "2024-02-01", -1.0), ("c", "2024-03-01", 9.0)],   # March: after as_of
                                 "customer_id string, month string, openness double"
                                 ).selectExpr("customer_id", "to_date(month) as month", "openness")
    spend = spark.createDataFrame([("a", "2024-01-01", "pubs_bars", 30.0), ("b", "2024-02-01", "charity", 10.0),
                                   ("a", "2024-02-01", "charity", 60.0), ("c", "2024-02-01", "pets", 5.0)],
                                  "customer_id string, month string, txn_class string, spend double"
                                  ).selectExpr("customer_id", "to_date(month) as month", "txn_class", "spend")
    labels = spark.createDataFrame([("a", 1, 2.0), ("b", 0, 4.0), ("c", None, 1.0)],
                                   "customer_id string, loan_default int, liquidity_index double")
    got = {r.segment: r for r in segment.profiles(segs, pers, spend, labels, ["openness"]).collect()}
    assert got[0].customers == 2 and got[1].customers == 1
    assert got[0].openness == pytest.approx(0.4) and got[1].openness == pytest.approx(-1.0)
    assert got[0].spend_mix == {"pubs_bars": pytest.approx(0.3), "charity": pytest.approx(0.7)}
    assert got[0].default_rate == pytest.approx(0.5) and got[0].liquidity_index == pytest.approx(3.0)
    assert got[1].default_rate is None and got[1].customers_with_loan == 0


def test_migration_counts_moves_arrivals_and_departures(spark):
    prev = spark.createDataFrame([("a", 0), ("b", 0), ("c", 1)], "customer_id string, segment int")
    cur = spark.createDataFrame([("a", 0), ("b", 1), ("d", 1)], "customer_id string, segment int")
    got = {(r.from_segment, r.to_segment): r.customers
           for r in segment.migration(prev, cur, "2024-01-01", "2024-02-01").collect()}
    assert got == {(0, 0): 1, (0, 1): 1, (1, None): 1, (None, 1): 1}


def test_embeddings_of_a_table_from_before_state_gain_the_column_and_keep_older_rows(spark, cfg):
    from microseg.tables import Tables

    tables = Tables(spark, cfg)
    old = spark.createDataFrame([("C1", [1.0, 2.0])], "customer_id string, embedding array<float>") \
        .selectExpr("customer_id", "date'2024-02-01' as as_of", "'1' as model_version", "embedding")
    tables.replace_where("embeddings", old, "as_of = '2024-02-01'")
    new = spark.createDataFrame([("C1", [3.0, 4.0], [5.0, 6.0])],
                                "customer_id string, embedding array<float>, state array<float>") \
        .selectExpr("customer_id", "date'2024-03-01' as as_of", "'2' as model_version", "embedding", "state")
    with pytest.raises(Exception, match="(?i)schema"):
        tables.replace_where("embeddings", new, "as_of = '2024-03-01'")
    tables.replace_where("embeddings", new, "as_of = '2024-03-01'", add_columns=True)
    rows = {str(r.as_of): r for r in tables.read("embeddings").collect()}
    assert rows["2024-02-01"].state is None and rows["2024-02-01"].embedding == [1.0, 2.0]
    assert rows["2024-03-01"].state == [5.0, 6.0]
