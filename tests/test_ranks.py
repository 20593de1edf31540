"""``train.num_processes: auto``: the ranks follow the cores or GPUs there are."""

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
