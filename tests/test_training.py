"""Training with each loader (arrow; petastorm where installed) on one process,
TorchDistributor (2 ranks, DDP/gloo) and Horovod (2 ranks, horovod.spark.run, where
installed): learning, rank agreement, resume, failing ranks."""

import importlib.util

import numpy as np
import pytest

from microseg.config import TrainConfig
from microseg.model import data
from microseg.model.launch import TrainingFailed, run_training
from microseg.model.loaders import training_data
from microseg.model.train import FAULT_ENV, TrainJob

T, F, N = 4, 8, 512                 # 1 class: 3 class features, 3 account, 2 calendar
PETASTORM = pytest.param("petastorm", marks=pytest.mark.skipif(
    importlib.util.find_spec("petastorm") is None, reason="petastorm is not installed (the Databricks runtime line)"))
ARROW_ONLY = pytest.mark.parametrize("datasets", ["arrow"], indirect=True)


@pytest.fixture(scope="module")
def frame(spark):
    """A learnable task: each month's 5 trait scores are a fixed linear map of its features."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N, T, F)).astype("float32")
    y = (x @ rng.normal(size=(F, 5)) / 2).astype("float32")
    rows = [(f"C{i}", x[i].ravel().tolist(), y[i].ravel().tolist(), [1.0] * T) for i in range(N)]
    return spark.createDataFrame(rows, "customer_id string, features array<float>, traits array<float>, "
                                       "trait_mask array<float>")


@pytest.fixture(scope="module", params=["arrow", PETASTORM])
def datasets(request, frame, tmp_path_factory):
    cache = tmp_path_factory.mktemp(request.param)
    with training_data(request.param, frame, frame.orderBy("customer_id").limit(128), cache, "t", 1, 4) as pair:
        yield pair


def _job(datasets, world=1, kind="lstm", **kw):
    train, val = datasets
    spec = {"kind": kind, "n_features": F, "hidden": 16, "months": T,
            "objective": "current" if kind == "lstm" else "window_traits"}
    batch = 64 // world                         # the same global batch whatever the world size
    params = dict(train_data=train, val_data=val, spec=spec, scaling=([0.0] * F, [1.0] * F), months=T,
                  epochs=4, batch_size=batch, learning_rate=0.02, steps=data.steps_per_epoch(N, batch, world),
                  seed=3)
    params.update(kw)
    return TrainJob(**params)


@pytest.fixture(scope="module")
def single(datasets):
    return run_training(_job(datasets), TrainConfig(launcher="single"))


def _learned(result):
    losses = [h["train_loss"] for h in result.history]
    return losses[-1] < 0.5 * losses[0] and result.final["val_loss"] < result.history[0]["val_loss"]


def test_single_process_learns_and_is_reproducible(datasets, single):
    assert _learned(single)
    assert single.rows_seen == 4 * N
    again = run_training(_job(datasets), TrainConfig(launcher="single"))
    assert again.state_dict == single.state_dict


def _two_ranks_learn_agree_and_match(datasets, single, launcher):
    result = run_training(_job(datasets, world=2), TrainConfig(launcher=launcher, num_processes=2))
    assert _learned(result)
    assert len(result.rank_digests) == 2 and len(set(result.rank_digests)) == 1   # same parameters
    assert result.rows_seen >= 4 * N                                               # both shards read
    single_loss, loss = single.final["val_loss"], result.final["val_loss"]
    assert abs(loss - single_loss) / single_loss < 0.35, (loss, single_loss)


def test_two_ranks_under_torch_distributor_learn_agree_and_match_single_process(datasets, single):
    _two_ranks_learn_agree_and_match(datasets, single, "torch_distributor")


@ARROW_ONLY
def test_two_horovod_ranks_learn_agree_and_match_single_process(datasets, single):
    pytest.importorskip("horovod", reason="horovod is not installed (the Databricks runtime line ships none)")
    _two_ranks_learn_agree_and_match(datasets, single, "horovod")


@ARROW_ONLY
def test_feedforward_trains_too(datasets):
    result = run_training(_job(datasets, kind="feedforward"), TrainConfig(launcher="single"))
    assert _learned(result)


@ARROW_ONLY
def test_killed_run_resumes_from_its_checkpoint_to_the_same_model(datasets, tmp_path, monkeypatch):
    uninterrupted = run_training(_job(datasets, checkpoint_dir=str(tmp_path / "a")), TrainConfig(launcher="single"))
    job = _job(datasets, checkpoint_dir=str(tmp_path / "b"))
    monkeypatch.setenv(FAULT_ENV, f"0:{2 * job.steps + 1}")          # dies in epoch 3
    with pytest.raises(RuntimeError, match="injected fault"):
        run_training(job, TrainConfig(launcher="single"))
    assert (tmp_path / "b" / "last.pt").exists()
    monkeypatch.delenv(FAULT_ENV)
    resumed = run_training(job, TrainConfig(launcher="single"))
    assert resumed.resumed_from == 2
    assert resumed.state_dict == uninterrupted.state_dict
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in uninterrupted.history]


@ARROW_ONLY
def test_a_failing_rank_fails_the_job_fast(datasets, monkeypatch):
    import time

    monkeypatch.setenv(FAULT_ENV, "1:2")
    start = time.perf_counter()
    with pytest.raises(TrainingFailed, match="torch_distributor training with 2 processes failed"):
        run_training(_job(datasets, world=2), TrainConfig(launcher="torch_distributor", num_processes=2))
    assert time.perf_counter() - start < 90        # no hang until gloo's timeout


@ARROW_ONLY
def test_keep_chooses_the_last_epochs_weights_or_the_best_validation_losss(datasets):
    """A rate that grows 4x an epoch, so validation loss turns up before the end: `best`
    keeps the weights of its lowest epoch, `last` (the default) the final epoch's."""
    jobs = {keep: _job(datasets, epochs=6, lr_step_epochs=1, lr_gamma=4.0, keep=keep) for keep in ("best", "last")}
    got = {keep: run_training(job, TrainConfig(launcher="single")) for keep, job in jobs.items()}
    history = got["last"].history
    lowest = min(history, key=lambda h: h["val_loss"])["epoch"]
    assert lowest < 6, [round(h["val_loss"], 4) for h in history]       # the case the choice is about
    assert got["best"].kept_epoch == lowest and got["last"].kept_epoch == 6
    assert got["best"].kept["val_loss"] == min(h["val_loss"] for h in history)
    assert got["best"].state_dict != got["last"].state_dict
    assert got["best"].history == history                               # the same run; only the weights kept differ
