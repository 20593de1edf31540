"""The training-data loader ``train.loader`` names: ``arrow`` (``loader_arrow``) or
``petastorm`` (``loader_petastorm``, the pinned line only)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyspark.sql import DataFrame


@contextmanager
def training_data(loader: str, train: DataFrame, validation: DataFrame, cache_dir: str | Path,
                  table: str, version: int, partitions: int) -> Iterator[tuple]:
    """(training, validation) data that ranks read (``training_batches``, ``all_batches``)
    for ``table`` at ``version``; Petastorm's copies are removed on leaving, the arrow
    loader's cache is kept for the next run on the same version."""
    if loader == "arrow":
        from microseg.model.loader_arrow import write_cache

        yield (write_cache(train, Path(cache_dir) / "arrow", table, version, "train", partitions),
               write_cache(validation, Path(cache_dir) / "arrow", table, version, "validation", partitions))
        return
    if importlib.util.find_spec("petastorm") is None:
        raise RuntimeError("train.loader is petastorm, which is not installed here (the Databricks "
                           "runtime line ships none); set train.loader=arrow")
    from microseg.model.loader_petastorm import make_converter

    cache = Path(cache_dir) / "petastorm"
    made = [make_converter(train, cache, partitions), make_converter(validation, cache, partitions)]
    try:
        yield tuple(made)
    finally:
        for data in made:
            data.delete()
