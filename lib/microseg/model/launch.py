"""Run the training loop on the configured launcher; every launcher returns a TrainResult.

- ``torch_distributor`` (default): Spark's TorchDistributor, DDP over gloo on CPU or NCCL
  on GPU, ``num_processes`` ranks, locally on the driver or as Spark tasks;
- ``horovod``: ``horovod.spark.run`` (the HorovodRunner model) with DistributedOptimizer;
- ``single``: one process, for laptops and debugging.
A rank that fails makes the launcher raise (no hang): torchrun and Horovod tear the job down.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import sys

from microseg.config import ConfigError, TrainConfig
from microseg.model.train import TrainJob, TrainResult, train


CORES_PER_RANK = 2   # a CPU rank and its Petastorm loader: on 2 cores, 2 ranks train slower than 1


def auto_ranks(cores: int, gpus: int, use_gpu: bool) -> int:
    """``train.num_processes: auto``: one rank per GPU with ``use_gpu``, else one per
    ``CORES_PER_RANK`` cores, at least one."""
    if use_gpu:
        if gpus < 1:
            raise ConfigError("train.num_processes: auto found no GPU while train.use_gpu is true; set "
                              "train.use_gpu: false, or give the driver (train.local_mode) or executors GPUs")
        return gpus
    return max(1, cores // CORES_PER_RANK)


def ranks(cfg: TrainConfig, spark) -> int:
    """The ranks to train on: ``train.num_processes``, or for ``auto`` (:func:`auto_ranks`)
    the cores and GPUs of this machine (``train.local_mode``) or of the cluster's executors."""
    if cfg.num_processes != "auto":
        return cfg.num_processes
    if cfg.local_mode:
        import torch

        return auto_ranks(len(os.sched_getaffinity(0)), torch.cuda.device_count(), cfg.use_gpu)
    sc = spark.sparkContext
    executors = max(1, sc._jsc.sc().getExecutorMemoryStatus().size() - 1)   # less the driver
    gpus = executors * int(float(sc.getConf().get("spark.executor.resource.gpu.amount", "0")))
    return auto_ranks(sc.defaultParallelism, gpus, cfg.use_gpu)


class TrainingFailed(RuntimeError):
    """A rank failed; the message carries the launcher's error and what to look at."""


PR_SET_PDEATHSIG = 1   # linux/prctl.h


def _die_with_launcher() -> None:
    """Have the kernel SIGKILL this rank when its launcher dies. torchrun starts each rank
    in a session of its own, out of reach of a kill of the job's process group; an orphaned
    rank would train on and overwrite the checkpoint the re-run resumes from."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:   # it died before the call
        os.kill(os.getpid(), signal.SIGKILL)


def _exit_when_done() -> None:
    """End this rank by ``os._exit`` once its script is done, as multiprocessing ends its
    children, skipping the C++ teardown: there a thread still joinable was destroyed in about
    1 launch in 10 (SIGABRT, "terminate called without an active exception", after the
    result was written), and torchrun then stopped the other rank, maybe mid-write. A script
    that ended in an exception still exits with status 1."""
    def end() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1 if getattr(sys, "last_value", None) is not None else 0)

    atexit.register(end)


def _ddp_worker(job: TrainJob, backend: str) -> TrainResult:
    from microseg.model.comm import TorchDDPComm

    _die_with_launcher()
    comm = TorchDDPComm(backend)
    try:
        result = train(job, comm)
    finally:
        comm.close()
    _exit_when_done()
    return result


def _horovod_worker(job: TrainJob) -> TrainResult:
    from microseg.model.comm import HorovodComm

    comm = HorovodComm()
    try:
        return train(job, comm)
    finally:
        comm.close()


def run_training(job: TrainJob, cfg: TrainConfig) -> TrainResult:
    if cfg.launcher == "single":
        return train(job)
    try:
        if cfg.launcher == "torch_distributor":
            from pyspark.ml.torch.distributor import TorchDistributor

            distributor = TorchDistributor(num_processes=cfg.num_processes, local_mode=cfg.local_mode,
                                           use_gpu=cfg.use_gpu)
            return distributor.run(_ddp_worker, job, "nccl" if cfg.use_gpu else "gloo")
        import horovod.spark

        return horovod.spark.run(_horovod_worker, args=(job,), num_proc=cfg.num_processes,
                                 use_gloo=True, verbose=0)[0]
    except Exception as err:  # the launchers raise their own types; say which and why
        raise TrainingFailed(f"{cfg.launcher} training with {cfg.num_processes} processes failed: "
                             f"{str(err)[-2000:]}. The rank's own traceback is above; the last "
                             "checkpoint is kept, so re-running resumes from it.") from err
