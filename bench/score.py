"""Scoring speed: the broadcast-encoder Spark UDF against plain batched torch inference of
the same model in one process, side by side; and segmentation time per 100k customers.

Figures: ``embed.rows_per_s_per_core`` (UDF rows/s over Spark's cores),
``embed.plain_rows_per_s`` (one process, one torch thread, batches of the Arrow batch
size), ``embed.ratio_vs_plain_torch`` (UDF per core / plain per core: the model alone in
memory is the reference), ``embed.ratio_vs_plain_torch_with_io`` (both read the same
Delta table's Parquet files: Spark + UDF per core against one process with pyarrow),
``embed.spark_floor_rows_per_s_per_core`` and ``embed.ratio_floor_vs_plain_torch`` (the same
UDF with an encoder that computes nothing: what moving the rows through Spark and Arrow
costs, so the ceiling of the ratio for the configured encoder; a slower model comes closer to 1),
``embed.ratio_vs_plain_torch_hidden128x2`` (the same comparison for a 2-layer LSTM of
hidden size 128), the peers on one registered model and the same rows (``_peers``):
``embed.ratio_vs_mlflow_spark_udf`` and ``embed.ratio_vs_predict_batch_udf`` (ours / theirs,
rows/s), and ``segment.seconds_per_100k`` (KMeans fit with k=12 plus nearest-centroid assignment of
every row, scaled to 100k customers).
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import pyarrow.parquet as pq
import torch
from pyspark.sql import functions as F

from microseg.config import SegmentConfig, load_config
from microseg.model.networks import build_model
from microseg.model.train import state_bytes
from microseg.score import segment
from microseg.score.embed import embed_customers, map_embeddings
from microseg.spark import get_spark

T, F_ = 24, 86                 # 24 months x (27 classes x 3 + 3 account + 2 calendar features)
SIZES = {"small": 20_000, "full": 100_000}
SPEC = {"kind": "lstm", "n_features": F_, "months": T, "hidden": 32, "layers": 1, "objective": "next"}


class NoCompute(torch.nn.Module):
    """An encoder that computes nothing: the UDF's cost besides the model."""

    def vectors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros(len(x), SPEC["hidden"])
        return zeros, zeros


def _udf_rate(df, n: int, embeddings) -> float:
    # A warm-up over every partition, so that each Python worker has imported torch and
    # built its encoder before the clock starts.
    embeddings(df.sample(fraction=0.02, seed=0)).write.format("noop").mode("overwrite").save()
    start = time.perf_counter()
    embeddings(df).write.format("noop").mode("overwrite").save()
    return n / (time.perf_counter() - start)


def _plain(model, x: np.ndarray, batch: int) -> float:
    torch.set_num_threads(1)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            model.embed(torch.from_numpy(x[i:i + batch]))
    return len(x) / (time.perf_counter() - start)


def _with_io(spark, df, model, spec, batch: int) -> tuple[float, float]:
    """Rows/s when both sides start from the same Delta table: the Spark UDF, and one
    process reading the table's Parquet files with pyarrow into the plain model."""
    with tempfile.TemporaryDirectory() as tmp:
        df.write.format("delta").save(tmp)
        table = spark.read.format("delta").load(tmp)
        n = table.count()
        weights = state_bytes(model)
        udf = _udf_rate(table, n, lambda d: embed_customers(d, weights, spec, "1"))
        torch.set_num_threads(1)
        start = time.perf_counter()
        with torch.inference_mode():
            for path in sorted(table.inputFiles()):
                for rb in pq.ParquetFile(path.removeprefix("file:")).iter_batches(batch, columns=["features"]):
                    flat = rb.column(0).flatten().to_numpy()
                    model.embed(torch.from_numpy(flat.reshape(rb.num_rows, T, F_)))
        return udf, n / (time.perf_counter() - start)


def _peers(spark, df, model, n: int, batch: int) -> dict[str, float]:
    """Rows/s of the same registered model on the same rows, in one run: ours (the
    registered version's weights broadcast to ``embed_customers``), MLflow's
    ``spark_udf(env_manager="local")`` (Databricks' batch-inference docs) and Spark's
    ``predict_batch_udf`` with ``input_tensor_shapes`` (the model loaded from the registry
    on each worker, called on [batch, T x F] arrays)."""
    import mlflow
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.types import ArrayType, FloatType, StructField, StructType

    from microseg import tracking

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config("local", overrides={"tables.root": tmp, "mlflow.experiment": "bench-embed"})
        tracking.setup(cfg)
        name = "bench_encoder"
        version = tracking.log_encoder(state_bytes(model), {"model": SPEC, "months": T}, [0.0] * (T * F_), name)
        uri = f"models:/{name}/{version}"
        weights, spec = tracking.encoder_files(name, version)
        ours = _udf_rate(df, n, lambda d: embed_customers(d, weights, spec["model"], str(version)))

        out = StructType([StructField("embedding", ArrayType(FloatType()))])   # the pyfunc's output frame
        mlflow_udf = mlflow.pyfunc.spark_udf(spark, uri, result_type=out, env_manager="local")
        via_mlflow = _udf_rate(df, n, lambda d: d.select("customer_id", mlflow_udf(F.struct("features"))
                                                         .getField("embedding").alias("embedding")))

        def make_predict_fn():
            encoder = mlflow.pyfunc.load_model(uri).unwrap_python_model().model
            torch.set_num_threads(1)

            def predict(x: np.ndarray) -> np.ndarray:
                with torch.inference_mode():
                    return encoder.embed(torch.from_numpy(x.reshape(len(x), T, F_))).numpy()
            return predict

        batch_udf = predict_batch_udf(make_predict_fn, return_type=ArrayType(FloatType()), batch_size=batch,
                                      input_tensor_shapes=[[T * F_]])
        via_batch_udf = _udf_rate(df, n, lambda d: d.select("customer_id", batch_udf("features").alias("embedding")))
    return {"ours": ours, "mlflow_spark_udf": via_mlflow, "predict_batch_udf": via_batch_udf}


def run(scale: str) -> dict[str, tuple[float, str]]:
    n = SIZES[scale]
    cfg = load_config("local")
    spark = get_spark(cfg)
    cores = spark.sparkContext.defaultParallelism
    torch.manual_seed(0)
    model, spec = build_model(SPEC).eval(), SPEC
    # Rows made on the executors, cached, so the timing covers the UDF only.
    df = (spark.range(n, numPartitions=cores * 2)
          .select(F.format_string("C%08d", "id").alias("customer_id"), F.current_date().alias("as_of"),
                  F.expr(f"transform(sequence(1, {T * F_}), i -> cast(((id * 31 + i * 17) % 1000) / 1000.0 as float))")
                  .alias("features"))
          .persist())
    df.count()
    sample = np.random.default_rng(0).random((min(n, 50_000), T, F_), dtype=np.float32)
    batch = cfg.spark.arrow_batch_size
    rates = {}
    for name, s in (("hidden32", spec), ("hidden128x2", {**SPEC, "hidden": 128, "layers": 2})):
        m = model if s is spec else build_model(s).eval()
        udf = _udf_rate(df, n, lambda d, m=m, s=s: embed_customers(d, state_bytes(m), s, "1"))
        _plain(m, sample[:2_000], batch)
        rates[name] = (udf, _plain(m, sample, batch))
        print(f"  LSTM {name}: UDF {udf:,.0f} rows/s on {cores} cores; plain torch, 1 process, "
              f"1 thread: {rates[name][1]:,.0f} rows/s", flush=True)
    floor = _udf_rate(df, n, lambda d: map_embeddings(d, NoCompute, F_, "1"))
    print(f"  UDF with an encoder that computes nothing: {floor:,.0f} rows/s on {cores} cores", flush=True)
    udf_rate, plain = rates["hidden32"]

    io_udf, io_plain = _with_io(spark, df, model, spec, cfg.spark.arrow_batch_size)
    print(f"  from a Delta table: UDF {io_udf:,.0f} rows/s on {cores} cores, "
          f"pyarrow + torch in one process {io_plain:,.0f} rows/s", flush=True)

    peers = _peers(spark, df, model, n, batch)
    print("  the registered model, same rows: " + ", ".join(f"{k} {v:,.0f} rows/s" for k, v in peers.items()),
          flush=True)

    emb = embed_customers(df, state_bytes(model), spec, "1").persist()
    emb.count()
    start = time.perf_counter()
    seg = segment.fit(emb, SegmentConfig(coarse_k=4, k=3), 1)
    segment.assign(emb, seg).write.format("noop").mode("overwrite").save()
    seg_seconds = time.perf_counter() - start
    print(f"  segment (fit 4 coarse x 3 micro + assign): {seg_seconds:.1f} s for {n} rows", flush=True)
    emb.unpersist()
    df.unpersist()
    return {
        "embed.rows_per_s_per_core": (udf_rate / cores, "rows/s/core"),
        "embed.plain_rows_per_s": (plain, "rows/s"),
        "embed.ratio_vs_plain_torch": (udf_rate / cores / plain, "ratio"),
        "embed.ratio_vs_plain_torch_with_io": (io_udf / cores / io_plain, "ratio"),
        "embed.spark_floor_rows_per_s_per_core": (floor / cores, "rows/s/core"),
        "embed.ratio_floor_vs_plain_torch": (floor / cores / plain, "ratio"),
        "embed.ratio_vs_plain_torch_hidden128x2": (rates["hidden128x2"][0] / cores / rates["hidden128x2"][1], "ratio"),
        "embed.registered_rows_per_s_per_core": (peers["ours"] / cores, "rows/s/core"),
        "embed.mlflow_spark_udf_rows_per_s_per_core": (peers["mlflow_spark_udf"] / cores, "rows/s/core"),
        "embed.predict_batch_udf_rows_per_s_per_core": (peers["predict_batch_udf"] / cores, "rows/s/core"),
        "embed.ratio_vs_mlflow_spark_udf": (peers["ours"] / peers["mlflow_spark_udf"], "ratio"),
        "embed.ratio_vs_predict_batch_udf": (peers["ours"] / peers["predict_batch_udf"], "ratio"),
        "segment.seconds_per_100k": (seg_seconds * 100_000 / n, "s"),
    }
