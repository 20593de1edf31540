"""Training throughput: the full path (loader + launcher + training loop) with each loader
(arrow; petastorm where installed) against the same model trained from in-memory tensors in
a plain loop, side by side in one run, each after an untimed warm-up (first-use costs:
imports, Parquet metadata, kernels).

Figures, for each loader ``<l>``: ``train.seq_per_s_1proc_<l>`` and ``train.seq_per_s_2proc_<l>``
(wall time of the whole launch: reading, TorchDistributor start-up for 2 processes,
training), ``train.loop_seq_per_s_*_<l>`` (the same runs timed inside the training loop,
start-up excluded) and ``train.ratio_vs_plain_loop_<l>`` (ours / plain, 1 process each);
``train.plain_seq_per_s_1proc`` (the plain loop, same model, batch and steps, 1 process).
The names without a loader are the default loader's (``train.loader``), and
``train.seconds_per_epoch_100k`` (70k training sequences, the 70% split of 100k customers,
at its measured 2-process rate: an extrapolation, not a run).
"""

from __future__ import annotations

import importlib.util
import tempfile
import time

import numpy as np
import torch

from microseg.config import TrainConfig, load_config
from microseg.model import data, objectives
from microseg.model.launch import run_training
from microseg.model.loaders import training_data
from microseg.model.networks import batch_of, build_model
from microseg.model.train import TrainJob
from microseg.spark import get_spark

T, F = 24, 86                     # 24 months x (27 classes x 3 + 3 account + 2 calendar features)
SIZES = {"small": (4_000, 2), "full": (20_000, 3)}   # sequences, epochs


def _dataset(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, T, F)).astype("float32")
    y = (x[..., :5] * 0.5 + rng.normal(scale=0.1, size=(n, T, 5))).astype("float32")
    return x, y, np.ones((n, T), dtype="float32")


def _job(train, n: int, epochs: int, world: int, spec: dict) -> TrainJob:
    batch = 64
    return TrainJob(train_data=train, val_data=None, spec=spec, scaling=([0.0] * F, [1.0] * F), months=T,
                    epochs=epochs, batch_size=batch, learning_rate=0.005,
                    steps=data.steps_per_epoch(n, batch, world), seed=1)


def plain_loop(x, y, mask, spec: dict, epochs: int, batch: int = 64) -> float:
    """Sequences per second of the same model from in-memory tensors, one process."""
    torch.manual_seed(1)
    model = build_model(spec)
    opt = torch.optim.Adam(model.parameters(), lr=0.005)
    xt, yt, mt = map(torch.from_numpy, (x, y, mask))
    steps = data.steps_per_epoch(len(x), batch)
    start = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for s in range(steps):
            idx = perm[s * batch:(s + 1) * batch]
            loss, _ = objectives.loss(model, batch_of(xt[idx], yt[idx], mt[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return epochs * steps * batch / (time.perf_counter() - start)


def run(scale: str) -> dict[str, tuple[float, str]]:
    n, epochs = SIZES[scale]
    spark = get_spark(load_config("local"))
    x, y, mask = _dataset(n)
    rows = [(f"C{i}", x[i].ravel().tolist(), y[i].ravel().tolist(), mask[i].tolist()) for i in range(n)]
    df = spark.createDataFrame(rows, "customer_id string, features array<float>, traits array<float>, "
                                     "trait_mask array<float>")
    del rows
    spec = {"kind": "lstm", "n_features": F, "months": T, "hidden": 32, "objective": "next"}
    figures: dict[str, tuple[float, str]] = {}
    loaders = ["arrow"] + (["petastorm"] if importlib.util.find_spec("petastorm") else [])
    with tempfile.TemporaryDirectory() as tmp:
        for loader in loaders:
            with training_data(loader, df, df, tmp, "bench", 0, 8) as (train, _):   # written once, untimed
                figures.update(_timed(loader, train, n, epochs, spec))
    plain_loop(x[:320], y[:320], mask[:320], spec, 1)   # the same warm-up for the reference
    plain = plain_loop(x, y, mask, spec, epochs)
    print(f"  plain loop, 1 process: {plain:,.0f}/s", flush=True)
    figures["train.plain_seq_per_s_1proc"] = (plain, "seq/s")
    for loader in loaders:
        figures[f"train.ratio_vs_plain_loop_{loader}"] = (figures[f"train.seq_per_s_1proc_{loader}"][0] / plain,
                                                          "ratio")
    default = TrainConfig().loader
    for name in ("seq_per_s_1proc", "seq_per_s_2proc", "loop_seq_per_s_1proc", "loop_seq_per_s_2proc",
                 "ratio_vs_plain_loop"):
        figures[f"train.{name}"] = figures[f"train.{name}_{default}"]
    figures["train.seconds_per_epoch_100k"] = (70_000 / figures["train.seq_per_s_2proc"][0], "s")
    return figures


def _timed(loader: str, train, n: int, epochs: int, spec: dict) -> dict[str, tuple[float, str]]:
    """One process and two (TorchDistributor) training from ``train``, after a warm-up."""
    figures = {}
    warm = _job(train, n, 1, 1, spec)              # first use: imports, Parquet metadata, kernels
    run_training(TrainJob(**{**warm.__dict__, "steps": 5}), TrainConfig(launcher="single"))
    for world, launcher in ((1, "single"), (2, "torch_distributor")):
        job = _job(train, n, epochs, world, spec)
        start = time.perf_counter()
        result = run_training(job, TrainConfig(launcher=launcher, num_processes=world))
        seconds = time.perf_counter() - start
        rate = result.rows_seen / seconds
        print(f"  {loader}, {world} process(es): {result.rows_seen} sequences in {seconds:.1f} s "
              f"= {rate:,.0f}/s", flush=True)
        figures[f"train.seq_per_s_{world}proc_{loader}"] = (rate, "seq/s")
        figures[f"train.loop_seq_per_s_{world}proc_{loader}"] = (result.rows_seen / result.seconds, "seq/s")
    return figures
