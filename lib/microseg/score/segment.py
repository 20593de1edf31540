"""Micro-segments from customer vectors with Spark MLlib, and coarse segments above them.

- ``choose_k``: silhouette (Spark's ClusteringEvaluator) over ``segment.k_grid`` on a
  sample; the k with the highest silhouette wins (the curve is logged to MLflow);
- ``fit_centroids``: KMeans or BisectingKMeans on all vectors -> the k x d centroid table;
- ``coarse_labels``: Ward clustering of the k micro centroids into ``segment.coarse_k``
  coarse segments (a small table on the driver: k rows);
- ``assign``: nearest stored centroid for any customer, new or old, without refitting.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.ml.clustering import BisectingKMeans, KMeans
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from microseg.config import SegmentConfig


def _vectors(df: DataFrame) -> DataFrame:
    return df.select(array_to_vector("embedding").alias("vector"))


def _estimator(cfg: SegmentConfig, k: int, seed: int):
    algo = KMeans if cfg.algorithm == "kmeans" else BisectingKMeans
    return algo(k=k, seed=seed, maxIter=cfg.max_iter, featuresCol="vector")


def choose_k(embeddings: DataFrame, cfg: SegmentConfig, seed: int) -> tuple[int, dict[int, float]]:
    """The k of ``cfg.k_grid`` with the best silhouette on a sample of ``cfg.sample_rows``."""
    total = embeddings.count()
    sample = embeddings.sample(fraction=min(1.0, cfg.sample_rows / max(total, 1)), seed=seed)
    vectors = _vectors(sample).persist()
    evaluator = ClusteringEvaluator(featuresCol="vector", predictionCol="prediction")
    curve = {}
    for k in cfg.k_grid:
        model = _estimator(cfg, k, seed).fit(vectors)
        curve[k] = float(evaluator.evaluate(model.transform(vectors)))
    vectors.unpersist()
    return max(curve, key=lambda k: (curve[k], -k)), curve


def fit_centroids(embeddings: DataFrame, cfg: SegmentConfig, seed: int, k: int | None = None) -> np.ndarray:
    """Fit the clustering on the embedding vectors; returns the k x d centroid table."""
    model = _estimator(cfg, k or cfg.k, seed).fit(_vectors(embeddings))
    return np.array(model.clusterCenters())


def coarse_labels(centroids: np.ndarray, coarse_k: int) -> np.ndarray:
    """Coarse segment of each micro centroid (Ward linkage); identity if too few centroids."""
    from sklearn.cluster import AgglomerativeClustering

    if len(centroids) <= coarse_k:
        return np.arange(len(centroids))
    return AgglomerativeClustering(n_clusters=coarse_k, linkage="ward").fit_predict(centroids)


def centroid_table(spark: SparkSession, centroids: np.ndarray, coarse: np.ndarray,
                   model_version: str) -> DataFrame:
    rows = [(model_version, i, int(coarse[i]), [float(v) for v in c]) for i, c in enumerate(centroids)]
    return spark.createDataFrame(rows, "model_version string, segment int, coarse_segment int, "
                                       "centroid array<double>")


def assign(embeddings: DataFrame, centroids: np.ndarray, coarse: np.ndarray) -> DataFrame:
    """Nearest centroid (segment), its coarse segment and the Euclidean distance, per row."""
    c = centroids.astype(np.float64)

    @pandas_udf("segment int, distance double")
    def nearest(emb: pd.Series) -> pd.DataFrame:
        x = np.stack(emb.to_numpy()).astype(np.float64)
        d2 = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
        best = d2.argmin(1)
        return pd.DataFrame({"segment": best.astype("int32"),
                             "distance": np.sqrt(d2[np.arange(len(x)), best])})

    coarse_of = F.array(*[F.lit(int(v)) for v in coarse])
    return (
        embeddings.withColumn("_a", nearest("embedding"))
        .select("customer_id", "as_of", "model_version",
                F.col("_a.segment").alias("segment"),
                F.get(coarse_of, F.col("_a.segment")).alias("coarse_segment"),
                F.col("_a.distance").alias("distance"))
    )


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
