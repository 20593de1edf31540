"""Embed every customer with a pandas UDF that carries the encoder as a broadcast.

The driver broadcasts the weights once; each Python worker builds the model from the
broadcast the first time it needs it and keeps it for later batches and tasks.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pandas as pd
import torch
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import ArrayType, FloatType

from microseg.model.networks import build_model

_MODELS: dict[str, torch.nn.Module] = {}


def weights_key(weights: bytes) -> str:
    return hashlib.sha256(weights).hexdigest()


def _model_from(broadcast, key: str) -> torch.nn.Module:
    """The worker's copy of the broadcast model, built once per Python worker process."""
    model = _MODELS.get(key)
    if model is None:
        weights, spec = broadcast.value
        model = build_model(spec)
        model.load_state_dict(torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True))
        model.eval()
        _MODELS.clear()
        _MODELS[key] = model
    return model


def embed_batch(model: torch.nn.Module, features: pd.Series, n_features: int) -> pd.Series:
    x = np.stack(features.to_numpy()).astype(np.float32, copy=False)
    x = x.reshape(len(x), -1, n_features)
    with torch.inference_mode():
        out = model.embed(torch.from_numpy(x)).numpy()
    return pd.Series(list(out))


def embedding_udf(broadcast, key: str, n_features: int, threads: int = 1):
    """A pandas UDF: flat feature array -> embedding vector. ``broadcast`` holds
    ``(weights bytes, spec)``; ``key`` identifies those weights."""

    @pandas_udf(ArrayType(FloatType()))
    def embed(features: pd.Series) -> pd.Series:
        torch.set_num_threads(threads)
        return embed_batch(_model_from(broadcast, key), features, n_features)

    return embed


def embed_customers(sequences: DataFrame, weights: bytes, spec: dict, model_version: str) -> DataFrame:
    """customer, as_of, model_version, embedding; the encoder travels as a broadcast."""
    broadcast = sequences.sparkSession.sparkContext.broadcast((weights, spec))
    udf = embedding_udf(broadcast, weights_key(weights), spec["n_features"])
    col: Column = udf(F.col("features"))
    return sequences.select(
        "customer_id", "as_of", F.lit(model_version).alias("model_version"), col.alias("embedding")
    )
