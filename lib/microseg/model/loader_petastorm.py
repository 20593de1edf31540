"""Training data through Petastorm (the pinned line: pyarrow 14, numpy 1).

A Spark DataFrame is materialised once as Parquet under a cache folder
(``make_spark_converter``), then streamed in batches; nothing is collected to the driver.
Each rank reads its own shard (row groups, index mod world size). Petastorm is imported
only here and only when this loader is chosen: the Databricks runtime line ships none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame

from microseg.model.data import COLUMNS, prefetch

logging.getLogger("petastorm").setLevel(logging.ERROR)


@dataclass(frozen=True)
class PetastormData:
    """A Petastorm converter, read the way training and validation need."""

    converter: object

    def training_batches(self, batch_size: int, steps: int, seed: int,
                         shard: int = 0, world: int = 1) -> Iterator[dict]:
        """Exactly ``steps`` batches from an endless, shuffled stream of this rank's shard.

        The single-threaded reader pool avoids petastorm 0.13.1's empty-shard race. Opened
        once per epoch with its own seed, an epoch's batches do not depend on earlier epochs.
        """
        from petastorm.pytorch import BatchedDataLoader

        def read() -> Iterator[dict]:
            with self.converter.make_torch_dataloader(
                batch_size=batch_size, num_epochs=None, cur_shard=shard, shard_count=world,
                reader_pool_type="dummy", seed=seed, shuffle_row_groups=True,
                data_loader_fn=BatchedDataLoader,
            ) as loader:
                it = iter(loader)
                for _ in range(steps):
                    yield next(it)

        return prefetch(read)

    def all_batches(self, batch_size: int, shard: int = 0, world: int = 1) -> Iterator[dict]:
        """One pass over this rank's shard, in order."""
        from petastorm.pytorch import BatchedDataLoader

        with self.converter.make_torch_dataloader(
            batch_size=batch_size, num_epochs=1, cur_shard=shard, shard_count=world,
            reader_pool_type="dummy", shuffle_row_groups=False, data_loader_fn=BatchedDataLoader,
        ) as loader:
            yield from loader

    def delete(self) -> None:
        self.converter.delete()


def make_converter(df: DataFrame, cache_dir: str | Path, partitions: int) -> PetastormData:
    """Materialise ``df``'s training columns as a Petastorm dataset (reused if unchanged).

    Rows are hash-partitioned and sorted by customer so that the Parquet files, and so the
    row groups a seeded shuffle walks through, are the same on every run.
    """
    from petastorm.spark import SparkDatasetConverter, make_spark_converter

    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    df.sparkSession.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF,
                             Path(cache_dir).resolve().as_uri())
    ordered = df.repartition(partitions, "customer_id").sortWithinPartitions("customer_id")
    converter = make_spark_converter(ordered.select(*COLUMNS))
    # petastorm lists the files with Spark's inputFiles(), whose order varies from run to
    # run; a seeded shuffle of row groups is only reproducible over a sorted list.
    converter.file_urls = sorted(converter.file_urls)
    return PetastormData(converter)
