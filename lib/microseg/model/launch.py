"""Run the training loop on the configured launcher; every launcher returns a TrainResult.

- ``torch_distributor`` (default): Spark's TorchDistributor, DDP over gloo on CPU or NCCL
  on GPU, ``num_processes`` ranks, locally on the driver or as Spark tasks;
- ``horovod``: ``horovod.spark.run`` (the HorovodRunner model) with DistributedOptimizer;
- ``single``: one process, for laptops and debugging.
A rank that fails makes the launcher raise (no hang): torchrun and Horovod tear the job down.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

from microseg.config import TrainConfig
from microseg.model.train import TrainJob, TrainResult, train


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


def _ddp_worker(job: TrainJob, backend: str) -> TrainResult:
    from microseg.model.comm import TorchDDPComm

    _die_with_launcher()
    comm = TorchDDPComm(backend)
    try:
        return train(job, comm)
    finally:
        comm.close()


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
