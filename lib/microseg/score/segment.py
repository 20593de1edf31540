"""Cluster embeddings into segments with Spark MLlib; assign and measure distances."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.ml.clustering import BisectingKMeans, KMeans
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf

from microseg.config import SegmentConfig


def fit_centroids(embeddings: DataFrame, cfg: SegmentConfig, seed: int) -> np.ndarray:
    """Fit the clustering on the embedding vectors; returns the k x d centroid table."""
    algo = KMeans if cfg.algorithm == "kmeans" else BisectingKMeans
    est = algo(k=cfg.k, seed=seed, maxIter=cfg.max_iter, featuresCol="vector")
    model = est.fit(embeddings.select(array_to_vector("embedding").alias("vector")))
    return np.array(model.clusterCenters())


def assign(embeddings: DataFrame, centroids: np.ndarray) -> DataFrame:
    """Nearest centroid (segment) and the Euclidean distance to it, for every row."""
    c = centroids.astype(np.float64)

    @pandas_udf("segment int, distance double")
    def nearest(emb: pd.Series) -> pd.DataFrame:
        x = np.stack(emb.to_numpy()).astype(np.float64)
        d2 = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
        best = d2.argmin(1)
        return pd.DataFrame({"segment": best.astype("int32"),
                             "distance": np.sqrt(d2[np.arange(len(x)), best])})

    return (
        embeddings.withColumn("_a", nearest("embedding"))
        .select("customer_id", "as_of", "model_version",
                F.col("_a.segment").alias("segment"), F.col("_a.distance").alias("distance"))
    )


def profiles(segments: DataFrame, personality: DataFrame, traits: list[str]) -> DataFrame:
    """Per segment: size and mean trait scores over the customers' window months."""
    sizes = segments.groupBy("segment").agg(F.count("*").alias("customers"))
    traits_mean = (
        segments.select("customer_id", "segment")
        .join(personality, "customer_id")
        .groupBy("segment")
        .agg(*[F.avg(t).alias(t) for t in traits])
    )
    return sizes.join(traits_mean, "segment", "left").orderBy("segment")
