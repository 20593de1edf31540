"""The segmentation fit: k chosen and centroids fitted on the driver, a fixed number of Spark jobs."""

import time

import numpy as np
import pytest

from microseg.config import SegmentConfig
from microseg.score import segment


def _frame(spark, points):
    rows = [(f"C{i:04d}", [float(v) for v in p]) for i, p in enumerate(points)]
    return spark.createDataFrame(rows, "customer_id string, embedding array<double>")


def _blobs(per=50):
    rng = np.random.default_rng(0)
    centers = [[0, 0, 0], [30, 0, 0], [0, 30, 0], [0, 0, 30]]
    return np.vstack([c + rng.normal(size=(per, 3)) for c in centers])


def _fit_in_group(spark, df, seg_cfg, group):
    """(the segmentation, the Spark jobs its fit ran, seconds)."""
    sc = spark.sparkContext
    sc.setJobGroup(group, "segment fit")
    try:
        start = time.perf_counter()
        seg = segment.fit(df, seg_cfg, 1)
        return seg, len(sc.statusTracker().getJobIdsForGroup(group)), time.perf_counter() - start
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)


def test_fit_runs_the_same_few_spark_jobs_whatever_the_grids(spark):
    df = _frame(spark, _blobs()).persist()
    df.count()
    small = SegmentConfig(min_size=1, coarse_k_grid=[2, 3], micro_k_grid=[2, 3])
    full = SegmentConfig(min_size=1, coarse_k_grid=list(range(2, 9)), micro_k_grid=list(range(2, 9)))
    _, small_jobs, _ = _fit_in_group(spark, df, small, "segment-small-grid")
    seg, full_jobs, seconds = _fit_in_group(spark, df, full, "segment-full-grid")
    df.unpersist()
    print(f"segment fit: {full_jobs} Spark jobs for grids 2..8, {small_jobs} for 2..3; {seconds:.1f} s")
    assert len(seg.coarse) == 4 and set(seg.coarse_curve) == set(range(2, 9))
    assert full_jobs == small_jobs <= 8, (full_jobs, small_jobs)
    assert seconds < 15, seconds


def test_fit_does_not_follow_spark_row_order(spark):
    df = _frame(spark, _blobs(per=20))
    seg_cfg = SegmentConfig(min_size=1, coarse_k_grid=[2, 3, 4, 5], micro_k_grid=[2, 3])
    one = segment.fit(df, seg_cfg, 1)
    other = segment.fit(df.orderBy(df.customer_id.desc()).repartition(3), seg_cfg, 1)
    np.testing.assert_array_equal(one.coarse, other.coarse)
    np.testing.assert_array_equal(one.micro, other.micro)
    assert one.coarse_curve == other.coarse_curve and one.micro_curves == other.micro_curves


def test_every_point_its_own_segment_has_silhouette_zero(spark):
    points = [[0.0, 0.0], [40.0, 0.0], [0.0, 40.0], [40.0, 40.0], [80.0, 80.0]]
    seg = segment.fit(_frame(spark, points), SegmentConfig(min_size=1, coarse_k_grid=list(range(2, 9))), 1)
    assert seg.coarse_curve[5] == 0.0
    assert "coarse: only 5 distinct vectors: k > 5 not tried" in seg.messages


def test_silhouette_from_segment_sums_equals_the_pairwise_one():
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 5))
    labels = rng.integers(0, 4, 300)
    labels[7] = 4                                                 # a segment of one point: it scores 0
    assert segment._silhouette(x, labels, 5) == pytest.approx(silhouette_score(x, labels, metric="sqeuclidean"))
