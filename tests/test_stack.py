"""The pinned stack really is what the pipeline runs on: Delta from cached jars, Horovod
built with Gloo against this torch, Petastorm importable with this pyarrow."""

import os

import pyarrow
import pyspark
import torch


def test_versions_are_the_locked_line():
    assert pyspark.__version__.startswith("4.0.")
    assert pyarrow.__version__ == "14.0.2"          # petastorm 0.13.1 needs < 15


def test_spark_uses_the_cached_delta_jars(spark):
    assert os.environ.get("MICROSEG_JARS"), "run the tests with `make test`, which sets MICROSEG_JARS"
    conf = dict(spark.sparkContext.getConf().getAll())
    assert os.environ["MICROSEG_JARS"] in conf["spark.jars"] and "delta-spark_2.13" in conf["spark.jars"]
    assert "spark.jars.packages" not in conf                 # nothing resolved over the network


def test_horovod_is_built_with_gloo_for_this_torch():
    import horovod.torch as hvd

    assert hvd.gloo_built()
    assert not hvd.mpi_built()
    assert torch.__version__.startswith("2.")


def test_petastorm_imports_with_this_pyarrow():
    from petastorm.spark import make_spark_converter  # noqa: F401
