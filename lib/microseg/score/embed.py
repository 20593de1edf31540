"""Embed every customer with a vectorised Spark UDF that carries the encoder as a broadcast.

The driver broadcasts the weights once; each Python worker builds the model from the
broadcast the first time it needs it and keeps it for later batches and tasks. Batches
move as Arrow (``mapInArrow``): the feature arrays of a batch are one contiguous float
buffer, reshaped to [rows, T, F] without a copy per row, and the vectors go back the same
way: ``embedding`` (what segments are fitted on) and ``state`` (the plain customer state,
for downstream models; ``networks._Encoder.vectors``). Torch runs one thread per Spark
task, so Spark's cores are not oversubscribed.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import torch
from pyspark.sql import DataFrame

from microseg.model.networks import build_model

# Arrow hands over read-only buffers; inference never writes to them, so no copy is made.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

SCHEMA = "customer_id string, as_of date, model_version string, embedding array<float>, state array<float>"
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


def _list_array(values: np.ndarray) -> pa.Array:
    """[rows, width] floats -> an Arrow list<float> column, one list per row, without a copy per row."""
    rows, width = values.shape
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.ravel(), pa.float32()))


def embed_array(model: torch.nn.Module, features: pa.Array, n_features: int) -> tuple[pa.Array, pa.Array]:
    """An Arrow list<float> column of flat [T x F] rows -> (embeddings, states) as list<float>."""
    rows = len(features)
    flat = features.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if rows and flat.size % (rows * n_features):
        raise ValueError(f"feature arrays must all hold T x {n_features} values; got {flat.size} "
                         f"values for {rows} rows")
    with torch.inference_mode():
        emb, state = model.vectors(torch.from_numpy(flat.reshape(rows, -1, n_features)))
    return _list_array(emb.numpy()), _list_array(state.numpy())


def _embed_fn(load, n_features: int, model_version: str, threads: int):
    def embed(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        torch.set_num_threads(threads)
        model = load()
        for batch in batches:
            emb, state = embed_array(model, batch.column("features"), n_features)
            version = pa.array([model_version] * batch.num_rows, pa.string())
            yield pa.RecordBatch.from_arrays(
                [batch.column("customer_id"), batch.column("as_of"), version, emb, state],
                names=["customer_id", "as_of", "model_version", "embedding", "state"])

    return embed


def map_embeddings(sequences: DataFrame, load, n_features: int, model_version: str,
                   threads: int = 1) -> DataFrame:
    """``sequences`` through the Arrow UDF with the encoder that ``load()`` returns on each
    worker (it must have ``vectors``)."""
    fn = _embed_fn(load, n_features, model_version, threads)
    return sequences.select("customer_id", "as_of", "features").mapInArrow(fn, SCHEMA)


def embed_customers(sequences: DataFrame, weights: bytes, spec: dict, model_version: str,
                    threads: int = 1) -> DataFrame:
    """customer_id, as_of, model_version, embedding, state for every row of ``sequences``."""
    broadcast = sequences.sparkSession.sparkContext.broadcast((weights, spec))
    key = weights_key(weights)
    return map_embeddings(sequences, lambda: _model_from(broadcast, key), spec["n_features"],
                          model_version, threads)
