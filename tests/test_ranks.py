"""Ranks: ``train.num_processes: auto`` follows the cores or GPUs there are; a finished rank
exits without the C++ teardown."""

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from microseg.config import ConfigError, TrainConfig
from microseg.model.launch import auto_ranks, ranks


def test_auto_gives_one_rank_per_two_cores_or_one_per_gpu():
    assert auto_ranks(cores=2, gpus=0, use_gpu=False) == 1     # on 2 cores, 2 ranks are slower than 1
    assert auto_ranks(cores=1, gpus=0, use_gpu=False) == 1
    assert auto_ranks(cores=16, gpus=0, use_gpu=False) == 8
    assert auto_ranks(cores=16, gpus=4, use_gpu=True) == 4
    with pytest.raises(ConfigError, match="train.num_processes: auto found no GPU while train.use_gpu"):
        auto_ranks(cores=16, gpus=0, use_gpu=True)


def test_auto_is_the_default_and_a_number_still_wins(spark):
    assert TrainConfig().num_processes == "auto"
    assert ranks(TrainConfig(num_processes=3), spark) == 3
    # ranks as Spark tasks: the session's cores (local[2] here), one rank per two
    assert ranks(TrainConfig(local_mode=False), spark) == spark.sparkContext.defaultParallelism // 2
    for bad in ("many", 0):
        with pytest.raises(ValidationError):
            TrainConfig(num_processes=bad)


@pytest.mark.parametrize("ending, status", [("print('done')", 0), ("raise ValueError('boom')", 1)])
def test_a_finished_rank_exits_without_teardown_and_keeps_a_failure_status(ending, status):
    """A rank ends by os._exit once its script is done (C++ teardown aborted ~1 launch in 10):
    its output is flushed, and a script that ends in an exception still exits with 1."""
    script = ("import atexit, sys\n"
              "atexit.register(lambda: sys.stdout.write('teardown ran\\n'))\n"   # skipped by os._exit
              "from microseg.model.launch import _exit_when_done\n"
              f"_exit_when_done()\n{ending}\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == status, done.stderr
    assert "teardown ran" not in done.stdout
    assert ("done" in done.stdout) == (status == 0)
    assert ("boom" in done.stderr) == (status == 1)
