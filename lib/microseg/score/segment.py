"""Segments at two levels from customer vectors: coarse segments, and micro-segments
inside each coarse segment. k is chosen and centroids fitted on the driver with
scikit-learn, on samples of at most ``segment.sample_rows`` vectors per level (collected
once each: bounded by sample_rows x dimension, never the full table); Spark samples,
counts and assigns every customer.

- coarse: KMeans (or BisectingKMeans) on a sample of ``segment.sample_rows`` vectors,
  k = ``segment.coarse_k`` or the k of ``segment.coarse_k_grid`` with the best silhouette
  (squared Euclidean, as Spark's ClusteringEvaluator: exact over the sample in O(n k d)) among
  those whose every segment, scaled from the sample to all customers, holds at least
  ``segment.min_size`` customers;
- micro: every customer goes to its nearest coarse centroid; each coarse segment's members
  are sampled again (up to ``sample_rows``) and clustered on their own: k = ``segment.k``,
  or, among the k of ``segment.micro_k_grid`` that reach ``segment.micro_min_silhouette``
  and ``min_size`` within the coarse segment, the one with the lowest BIC of a Gaussian
  mixture with diagonal covariances (``micro_k_criterion: bic``; silhouette prefers the
  coarsest split of weakly separated micro-segments) or the best silhouette
  (``silhouette``); k = 1 (the coarse segment is one micro-segment) when none reaches them;
- ``assign``: nearest coarse centroid, then the nearest micro centroid of that coarse
  segment, for any customer, new or old, without refitting; the fitted labels are this
  assignment too, so re-assigning from the stored centroids gives the same segments;
- ``degeneracy``: one segment (either level) above ``segment.max_share`` of the customers,
  or one below ``min_size``, marks the segmentation degenerate.

Micro-segment ids are dense over the whole table, ordered by (coarse segment, local id).
Vectors are told apart to 9 decimals (rounding noise is no point of its own). Fewer
distinct vectors in the sample than a k: that k is not tried; one distinct vector: one
segment, said in the messages and, for the whole table, as ``one_point``: the reason the
segmentation is degenerate; a fixed k above the distinct vectors: k = their number.
A collected sample is put in order of its values, so the fit does not follow Spark's row order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf
from sklearn.cluster import BisectingKMeans, KMeans
from sklearn.mixture import GaussianMixture

from microseg.config import SegmentConfig

N_INIT = 4                   # KMeans starts per k; the fit with the lowest inertia is kept


@dataclass
class Segmentation:
    """Centroids of both levels; micro rows ordered by (parent coarse segment, local id)."""

    coarse: np.ndarray                     # coarse_k x d
    micro: np.ndarray                      # micro count x d
    parent: np.ndarray                     # coarse segment of each micro centroid
    coarse_curve: dict[int, float] = field(default_factory=dict)              # k -> silhouette
    micro_curves: dict[int, dict[int, float]] = field(default_factory=dict)   # coarse -> k -> silhouette
    micro_bic: dict[int, dict[int, float]] = field(default_factory=dict)      # coarse -> k -> BIC (criterion bic)
    messages: list[str] = field(default_factory=list)
    one_point: str | None = None           # why all customers are one segment: too few distinct vectors

    @property
    def micro_k(self) -> dict[int, int]:
        return {c: int((self.parent == c).sum()) for c in range(len(self.coarse))}


def _collect(sample: DataFrame, label: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``embedding`` rows of a bounded ``sample`` as an n x d array ordered by (label,
    values), and the ``label`` column beside them (zeros without one)."""
    pdf = sample.select("embedding", (F.col(label) if label else F.lit(0)).alias("_label")).toPandas()
    x = np.array(pdf["embedding"].tolist(), dtype=np.float64)
    labels = pdf["_label"].to_numpy()
    if not len(x):
        return x, labels
    order = np.lexsort([*x.T[::-1], labels])
    return x[order], labels[order]


def _estimator(cfg: SegmentConfig, k: int, seed: int):
    if cfg.algorithm == "kmeans":
        return KMeans(n_clusters=k, random_state=seed, max_iter=cfg.max_iter, n_init=N_INIT)
    return BisectingKMeans(n_clusters=k, random_state=seed, max_iter=cfg.max_iter, n_init=N_INIT)


def _silhouette(x: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Mean silhouette of all points with squared Euclidean distances, from per-segment sums
    in O(n k d) as Spark's ClusteringEvaluator computes it; a point alone in its segment scores 0."""
    sizes = np.bincount(labels, minlength=k)
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, labels, x)
    sq = (x * x).sum(1)
    to = np.maximum(sq[:, None] * sizes - 2 * x @ sums.T + np.bincount(labels, weights=sq, minlength=k), 0.0)
    rows, own = np.arange(len(x)), sizes[labels]
    a = to[rows, labels] / np.maximum(own - 1, 1)                   # mean distance to the others in its segment
    mean_to = np.where(sizes > 0, to / np.maximum(sizes, 1), np.inf)
    mean_to[rows, labels] = np.inf
    b = mean_to.min(1)                                               # to the nearest other segment
    top = np.maximum(a, b)
    return float(np.where((own > 1) & (top > 0), (b - a) / np.where(top > 0, top, 1.0), 0.0).mean())


def _bic(x: np.ndarray, k: int, seed: int) -> float:
    """BIC of a k-component Gaussian mixture with diagonal covariances fitted to ``x``."""
    return float(GaussianMixture(k, covariance_type="diag", random_state=seed).fit(x).bic(x))


def _level(x: np.ndarray, cfg: SegmentConfig, seed: int, name: str, population: int, fixed: int | None,
           grid: list[int], min_size: int, floor: float | None, criterion: str = "silhouette"
           ) -> tuple[int, np.ndarray | None, dict, dict, list[str], str | None]:
    """(k, its k x d centroids or None for k = 1, silhouette by k, BIC by eligible k
    (criterion bic), messages, the message when the sample holds fewer than 2 distinct
    vectors) for one level on the sampled vectors ``x`` of ``population`` customers. A
    fixed k skips the rules."""
    if fixed == 1:
        return 1, None, {}, {}, [], None
    if fixed:
        grid, min_size, floor = [fixed], 0, None
    n = len(x)
    distinct = len(np.unique(np.round(x, 9), axis=0)) if n else 0
    if distinct < 2:
        note = f"{name}: {n} sampled vectors, {distinct} distinct: one segment"
        return 1, None, {}, {}, [note], note
    notes = [f"{name}: only {distinct} distinct vectors: k > {distinct} not tried"] if distinct < max(grid) else []
    if fixed and fixed > distinct:
        grid = [distinct]      # a fixed k above the distinct vectors: as many segments as there are
    curve, eligible = {}, {}
    for k in [k for k in grid if k <= distinct]:
        model = _estimator(cfg, k, seed).fit(x)
        sizes = np.bincount(model.labels_, minlength=k)
        sizes = sizes[sizes > 0]
        if len(sizes) < 2:
            notes.append(f"{name}: k={k} gave one non-empty segment")
            continue
        curve[k] = _silhouette(x, model.labels_, k)
        smallest = sizes.min() * population / n
        if len(sizes) < k:
            notes.append(f"{name}: k={k} gave {len(sizes)} non-empty segments")
        elif smallest < min_size:
            notes.append(f"{name}: k={k} has a segment of ~{smallest:.0f} customers (< min_size {min_size})")
        elif floor is not None and curve[k] < floor:
            continue
        else:
            eligible[k] = model.cluster_centers_
    if not eligible:
        rule = "" if floor is None else f"silhouette >= {floor} and "
        notes.append(f"{name}: no k of {grid} gives {rule}segments of >= {min_size} customers: one segment")
        return 1, None, curve, {}, notes, None
    bic = {k: _bic(x, k, seed) for k in eligible} if criterion == "bic" and len(eligible) > 1 else {}
    k = min(bic, key=lambda k: (bic[k], k)) if bic else max(eligible, key=lambda k: (curve[k], -k))
    return k, eligible[k], curve, bic, notes, None


def _sq_distances(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.maximum((x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :], 0.0)


def _nearest(coarse: np.ndarray, micro: np.ndarray, parent: np.ndarray):
    """A pandas UDF: embedding -> (nearest coarse centroid, nearest micro centroid among
    that coarse segment's, Euclidean distance to it)."""
    c, m, p = coarse.astype(np.float64), micro.astype(np.float64), np.asarray(parent)

    @pandas_udf("coarse_segment int, segment int, distance double")
    def nearest(emb: pd.Series) -> pd.DataFrame:
        x = np.stack(emb.to_numpy()).astype(np.float64)
        top = _sq_distances(x, c).argmin(1)
        d2 = np.where(p[None, :] == top[:, None], _sq_distances(x, m), np.inf)
        best = d2.argmin(1)
        return pd.DataFrame({"coarse_segment": top.astype("int32"), "segment": best.astype("int32"),
                             "distance": np.sqrt(d2[np.arange(len(x)), best])})

    return nearest


def fit(vectors: DataFrame, cfg: SegmentConfig, seed: int) -> Segmentation:
    """Coarse then micro centroids for the ``embedding`` column of ``vectors`` (see the
    module docstring for how each k is chosen); only samples and centroids reach the driver."""
    total = vectors.count()
    min_size = cfg.min_size_for(total)
    sample, _ = _collect(vectors.sample(fraction=min(1.0, cfg.sample_rows / max(total, 1)), seed=seed))
    kc, coarse, coarse_curve, _, messages, one_point = _level(sample, cfg, seed, "coarse", total, cfg.coarse_k,
                                                              cfg.coarse_k_grid, min_size, None)
    if coarse is None:
        coarse = sample.mean(0, keepdims=True)

    ids = np.arange(len(coarse))
    labelled = vectors.withColumn("_coarse", _nearest(coarse, coarse, ids)("embedding").coarse_segment)
    counts = {r["_coarse"]: r["count"] for r in labelled.groupBy("_coarse").count().collect()}   # kc rows
    fractions = {c: min(1.0, cfg.sample_rows / n) for c, n in counts.items()}
    members, member_of = _collect(labelled.sampleBy("_coarse", fractions, seed), "_coarse")
    micro, parent, curves, bics = [], [], {}, {}
    for c in ids:
        k, centers, curves[int(c)], bics[int(c)], notes, _ = _level(
            members[member_of == c], cfg, seed, f"coarse {c}", counts.get(c, 0), cfg.k, cfg.micro_k_grid,
            min_size, cfg.micro_min_silhouette, cfg.micro_k_criterion)
        micro.append(coarse[c:c + 1] if centers is None else centers)
        parent += [int(c)] * (1 if centers is None else k)
        messages += notes
    return Segmentation(coarse, np.concatenate(micro), np.array(parent), coarse_curve, curves, bics, messages,
                        one_point)


def centroid_table(spark: SparkSession, seg: Segmentation, model_version: str) -> DataFrame:
    """Both levels, one row per centroid; a coarse row's coarse_segment is its own id."""
    rows = ([(model_version, "coarse", i, i, [float(v) for v in c]) for i, c in enumerate(seg.coarse)]
            + [(model_version, "micro", i, int(seg.parent[i]), [float(v) for v in c])
               for i, c in enumerate(seg.micro)])
    return spark.createDataFrame(rows, "model_version string, level string, segment int, coarse_segment int, "
                                       "centroid array<double>")


def stored(rows: list) -> Segmentation:
    """The segmentation held by collected ``centroid_table`` rows (one model version)."""
    coarse = sorted((r.segment, r.centroid) for r in rows if r.level == "coarse")
    micro = sorted((r.segment, r.coarse_segment, r.centroid) for r in rows if r.level == "micro")
    return Segmentation(np.array([c for _, c in coarse]), np.array([c for _, _, c in micro]),
                        np.array([p for _, p, _ in micro]))


def assign(embeddings: DataFrame, seg: Segmentation) -> DataFrame:
    """Coarse segment, micro-segment and the Euclidean distance to the micro centroid, per row."""
    return (
        embeddings.withColumn("_a", _nearest(seg.coarse, seg.micro, seg.parent)("embedding"))
        .select("customer_id", "as_of", "model_version", "_a.coarse_segment", "_a.segment", "_a.distance")
    )


def degeneracy(sizes: pd.DataFrame, cfg: SegmentConfig, one_point: str | None = None) -> dict:
    """From one row per micro-segment (segment, coarse_segment, customers): the largest
    share and the smallest size over both levels, and whether (and why) the segmentation is
    degenerate: a segment above ``cfg.max_share`` of the customers or below ``min_size``, or
    ``one_point`` (``Segmentation.one_point``: too few distinct vectors), said first."""
    total = int(sizes["customers"].sum())
    min_size = cfg.min_size_for(total)
    levels = {"coarse": sizes.groupby("coarse_segment")["customers"].sum(),
              "micro": sizes.set_index("segment")["customers"]}
    reasons = [f"the vectors are not distinguishable ({one_point})"] if one_point else []
    for level, counts in levels.items():
        if counts.max() > cfg.max_share * total:
            reasons.append(f"{level} segment {counts.idxmax()} holds {counts.max() / total:.0%} of the "
                           f"customers (max_share {cfg.max_share})")
        if counts.min() < min_size:
            reasons.append(f"{level} segment {counts.idxmin()} has {counts.min()} customers (min_size {min_size})")
    return {"largest_share": float(levels["coarse"].max() / total), "smallest_size": int(levels["micro"].min()),
            "min_size": min_size, "degenerate": bool(reasons), "degenerate_reason": "; ".join(reasons) or None}


def profiles(segments: DataFrame, personality: DataFrame, monthly_spend: DataFrame,
             labels: DataFrame | None, traits: list[str]) -> DataFrame:
    """Per (as_of, segment): size, mean trait scores over the window's customer-months, the
    spend mix (share of the segment's spend per class), default rate and liquidity."""
    seg = segments.select("customer_id", "as_of", "segment", "coarse_segment")
    out = seg.groupBy("as_of", "segment", "coarse_segment").agg(F.count("*").alias("customers"))
    trait_means = (
        seg.join(personality, "customer_id").where(F.col("month") <= F.col("as_of"))
        .groupBy("as_of", "segment").agg(*[F.avg(t).alias(t) for t in traits])
    )
    by_class = (
        seg.join(monthly_spend, "customer_id").where(F.col("month") <= F.col("as_of"))
        .groupBy("as_of", "segment", "txn_class").agg(F.sum("spend").alias("spend"))
    )
    share = F.col("spend") / F.sum("spend").over(Window.partitionBy("as_of", "segment"))
    mix = (by_class.withColumn("share", share).groupBy("as_of", "segment")
           .agg(F.map_from_entries(F.collect_list(F.struct("txn_class", "share"))).alias("spend_mix")))
    out = out.join(trait_means, ["as_of", "segment"], "left").join(mix, ["as_of", "segment"], "left")
    if labels is not None:
        lab = (seg.join(labels, "customer_id").groupBy("as_of", "segment")
               .agg(F.avg("loan_default").alias("default_rate"),
                    F.count("loan_default").alias("customers_with_loan"),
                    F.avg("liquidity_index").alias("liquidity_index")))
        out = out.join(lab, ["as_of", "segment"], "left")
    return out


def migration(previous: DataFrame, current: DataFrame, from_as_of, as_of) -> DataFrame:
    """Customers from each segment at ``from_as_of`` to each segment at ``as_of``; a null
    segment is a customer who was not there (new) or is no longer there (gone)."""
    prev = previous.select("customer_id", F.col("segment").alias("from_segment"))
    cur = current.select("customer_id", F.col("segment").alias("to_segment"))
    return (prev.join(cur, "customer_id", "full_outer")
            .groupBy("from_segment", "to_segment").agg(F.count("*").alias("customers"))
            .select(F.lit(from_as_of).alias("from_as_of"), F.lit(as_of).alias("as_of"),
                    "from_segment", "to_segment", "customers"))
