import numpy as np
import pytest
import torch

from microseg.model.networks import LSTMEncoder
from microseg.model.train import state_bytes
from microseg.score import segment
from microseg.score.embed import embed_customers


def test_udf_embeddings_equal_the_plain_model(spark):
    torch.manual_seed(0)
    t, f = 6, 4
    model = LSTMEncoder(n_features=f, hidden=8)
    model.set_scaling(np.arange(f), np.full(f, 2.0))
    model.eval()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, t, f)).astype("float32")
    df = spark.createDataFrame(
        [(f"C{i}", x[i].ravel().tolist()) for i in range(50)], "customer_id string, features array<float>"
    ).selectExpr("*", "date'2024-03-01' as as_of").repartition(3)
    out = embed_customers(df, state_bytes(model), model.spec, "7")
    rows = {r.customer_id: r for r in out.collect()}
    assert {r.model_version for r in rows.values()} == {"7"}
    with torch.no_grad():
        expected = model.embed(torch.from_numpy(x)).numpy()
    got = np.stack([rows[f"C{i}"].embedding for i in range(50)])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_assign_picks_the_nearest_centroid_and_its_coarse_segment(spark):
    centroids = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    df = spark.createDataFrame(
        [("a", [1.0, 1.0]), ("b", [9.0, 0.0]), ("c", [0.0, 13.0])],
        "customer_id string, embedding array<float>",
    ).selectExpr("*", "date'2024-03-01' as as_of", "'1' as model_version")
    out = segment.assign(df, centroids, np.array([0, 1, 1]))
    got = {r.customer_id: (r.segment, r.coarse_segment, r.distance) for r in out.collect()}
    assert got["a"] == (0, 0, pytest.approx(np.sqrt(2)))
    assert got["b"] == (1, 1, pytest.approx(1.0))
    assert got["c"] == (2, 1, pytest.approx(3.0))


def _blobs(spark, centers, per=30, scale=0.5):
    rng = np.random.default_rng(0)
    rows = [(f"C{k}-{i}", (np.asarray(centers[k]) + rng.normal(scale=scale, size=len(centers[k]))).tolist())
            for k in range(len(centers)) for i in range(per)]
    return spark.createDataFrame(rows, "customer_id string, embedding array<float>")


@pytest.mark.parametrize("algorithm", ["kmeans", "bisecting_kmeans"])
def test_fit_recovers_well_separated_blobs(spark, cfg, algorithm):
    centers = np.array([[0, 0, 0], [20, 0, 0], [0, 20, 0]], dtype=float)
    seg_cfg = cfg.segment.model_copy(update={"algorithm": algorithm})
    fitted = segment.fit_centroids(_blobs(spark, centers), seg_cfg, 1, k=3)
    dist = np.linalg.norm(centers[:, None, :] - fitted[None, :, :], axis=-1)
    assert (dist.min(axis=1) < 1.0).all()      # every true center has a fitted centroid near it


def test_silhouette_chooses_the_planted_number_of_segments(spark, cfg):
    centers = [[0, 0], [30, 0], [0, 30], [30, 30], [60, 60]]
    seg_cfg = cfg.segment.model_copy(update={"k_grid": [2, 3, 5, 8], "sample_rows": 10_000})
    k, curve = segment.choose_k(_blobs(spark, centers, per=40), seg_cfg, 1)
    assert k == 5 and set(curve) == {2, 3, 5, 8}
    assert curve[5] > 0.8 and curve[5] == max(curve.values())


def test_coarse_segments_group_nearby_micro_centroids():
    micro = np.array([[0, 0], [1, 0], [0, 1], [50, 50], [51, 50]], dtype=float)
    labels = segment.coarse_labels(micro, 2)
    assert len(set(labels[:3])) == 1 and len(set(labels[3:])) == 1 and labels[0] != labels[3]
    assert list(segment.coarse_labels(micro[:2], 4)) == [0, 1]   # fewer micro than coarse: identity


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
