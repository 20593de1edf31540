"""The environment really is the lock it was built from (the pinned line or the Databricks
runtime line): every locked version installed, Delta from cached jars of the installed
delta-spark, Horovod built with Gloo and Petastorm importable where that line has them."""

import os
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch

LOCK = Path(sys.prefix) / "requirements.lock"   # copied in by scripts/env.sh


def _locked() -> dict[str, str]:
    pins = (line.split("==") for line in LOCK.read_text().splitlines() if "==" in line and not line.startswith("#"))
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins}


@pytest.fixture(scope="module")
def locked():
    if not LOCK.exists():
        pytest.skip("not an environment built by scripts/env.sh (make env / make env-dbr)")
    return _locked()


def test_every_locked_version_is_installed(locked):
    wrong = {name: (version, metadata.version(name)) for name, version in locked.items()
             if metadata.version(name) != version}
    assert not wrong, f"installed versions differ from {LOCK}: {wrong}"


def test_the_line_is_one_of_the_two(locked):
    import numpy
    import pyarrow
    import pyspark

    assert pyspark.__version__.startswith("4.0.")
    assert (pyarrow.__version__, numpy.__version__[:2]) in {("14.0.2", "1."), ("19.0.1", "2.")}
    if pyarrow.__version__ == "14.0.2":
        assert "petastorm" in locked                    # petastorm 0.13.1 needs pyarrow < 15


def test_spark_uses_the_cached_delta_jars(spark):
    assert os.environ.get("MICROSEG_JARS"), "run the tests with `make test`, which sets MICROSEG_JARS"
    conf = dict(spark.sparkContext.getConf().getAll())
    assert os.environ["MICROSEG_JARS"] in conf["spark.jars"]
    assert f"delta-spark_2.13-{metadata.version('delta-spark')}.jar" in conf["spark.jars"]
    assert "spark.jars.packages" not in conf                 # nothing resolved over the network


def test_horovod_is_built_with_gloo_for_this_torch():
    hvd = pytest.importorskip("horovod.torch", reason="horovod is not installed (the Databricks runtime line ships none)")
    assert hvd.gloo_built()
    assert not hvd.mpi_built()
    assert torch.__version__.startswith("2.")


def test_petastorm_imports_with_this_pyarrow():
    pytest.importorskip("petastorm", reason="petastorm is not installed (the Databricks runtime line ships none)")
    from petastorm.spark import make_spark_converter  # noqa: F401
