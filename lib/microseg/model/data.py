"""Training data through Petastorm: the one module that knows the loader.

A Spark DataFrame is materialised once as Parquet under a cache folder
(``make_spark_converter``), then streamed in batches; nothing is collected to the driver.
Each rank reads its own shard (row groups, index mod world size).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

from petastorm.pytorch import BatchedDataLoader
from pyspark.sql import DataFrame

from microseg.model.batch import Batch
from microseg.model.networks import batch_of

COLUMNS = ["features", "traits", "trait_mask"]

logging.getLogger("petastorm").setLevel(logging.ERROR)


def make_converter(df: DataFrame, cache_dir: str | Path, partitions: int):
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
    return converter


def steps_per_epoch(rows: int, batch_size: int, world: int = 1) -> int:
    return max(1, math.ceil(rows / (batch_size * world)))


def to_batch(batch: dict, months: int) -> Batch:
    """Flat arrays -> a left-aligned :class:`Batch` (x [B, T, F], traits [B, T, 5], masks)."""
    mask = batch["trait_mask"].float()
    b = mask.shape[0]
    return batch_of(batch["features"].float().reshape(b, months, -1),
                    batch["traits"].float().reshape(b, months, -1), mask)


def prefetch(make_iter, depth: int = 4) -> Iterator:
    """Iterate ``make_iter()`` in a background thread, ``depth`` items ahead: Parquet
    decoding (pyarrow) and the training step (torch) both release the GIL, so reading
    overlaps with training. Order and errors are preserved."""
    items: queue.Queue = queue.Queue(depth)
    done = object()

    def work() -> None:
        try:
            for item in make_iter():
                items.put(item)
            items.put(done)
        except BaseException as err:  # handed to the consumer, raised there
            items.put(err)

    threading.Thread(target=work, name="petastorm-prefetch", daemon=True).start()
    while (item := items.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def training_batches(converter, batch_size: int, steps: int, seed: int,
                     shard: int = 0, world: int = 1) -> Iterator[dict]:
    """Exactly ``steps`` batches from an endless, shuffled stream of this rank's shard.

    A fixed step count keeps ranks in lockstep; the single-threaded reader pool avoids
    petastorm 0.13.1's empty-shard race. Open one per epoch with its own seed: an epoch's
    batches then do not depend on earlier epochs, so a resumed run sees the same data.
    """
    def read() -> Iterator[dict]:
        with converter.make_torch_dataloader(
            batch_size=batch_size, num_epochs=None, cur_shard=shard, shard_count=world,
            reader_pool_type="dummy", seed=seed, shuffle_row_groups=True,
            data_loader_fn=BatchedDataLoader,
        ) as loader:
            it = iter(loader)
            for _ in range(steps):
                yield next(it)

    return prefetch(read)


def all_batches(converter, batch_size: int, shard: int = 0, world: int = 1) -> Iterator[dict]:
    """One pass over this rank's shard, in order."""
    with converter.make_torch_dataloader(
        batch_size=batch_size, num_epochs=1, cur_shard=shard, shard_count=world,
        reader_pool_type="dummy", shuffle_row_groups=False, data_loader_fn=BatchedDataLoader,
    ) as loader:
        yield from loader
