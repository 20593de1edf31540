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


def test_assign_picks_the_nearest_centroid(spark):
    centroids = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    df = spark.createDataFrame(
        [("a", [1.0, 1.0]), ("b", [9.0, 0.0]), ("c", [0.0, 13.0])],
        "customer_id string, embedding array<float>",
    ).selectExpr("*", "date'2024-03-01' as as_of", "'1' as model_version")
    got = {r.customer_id: (r.segment, r.distance) for r in segment.assign(df, centroids).collect()}
    assert got["a"] == (0, pytest.approx(np.sqrt(2)))
    assert got["b"] == (1, pytest.approx(1.0))
    assert got["c"] == (2, pytest.approx(3.0))


@pytest.mark.parametrize("algorithm", ["kmeans", "bisecting_kmeans"])
def test_fit_recovers_well_separated_blobs(spark, cfg, algorithm):
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0, 0], [20, 0, 0], [0, 20, 0]], dtype=float)
    rows = [(f"C{k}-{i}", (centers[k] + rng.normal(scale=0.5, size=3)).tolist())
            for k in range(3) for i in range(30)]
    df = spark.createDataFrame(rows, "customer_id string, embedding array<float>")
    fitted = segment.fit_centroids(df, cfg.segment.model_copy(update={"algorithm": algorithm, "k": 3}), 1)
    # every true center has a fitted centroid within 1.0
    dist = np.linalg.norm(centers[:, None, :] - fitted[None, :, :], axis=-1)
    assert (dist.min(axis=1) < 1.0).all()


def test_profiles_sizes_and_trait_means(spark):
    segs = spark.createDataFrame([("a", 0), ("b", 0), ("c", 1)], "customer_id string, segment int")
    pers = spark.createDataFrame([("a", 0.2), ("a", 0.4), ("b", 0.6), ("c", -1.0)],
                                 "customer_id string, openness double")
    got = {r.segment: (r.customers, r.openness) for r in segment.profiles(segs, pers, ["openness"]).collect()}
    assert got[0] == (2, pytest.approx(0.4)) and got[1] == (1, pytest.approx(-1.0))
