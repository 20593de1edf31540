"""What every training-data loader shares: the columns it reads, the batches it yields
(dicts of flat float tensors: ``features``, ``traits``, ``trait_mask``), the step count and
read-ahead. The loaders: ``loader_arrow`` (Spark-written Parquet read with pyarrow) and
``loader_petastorm``; ``loaders`` picks one by ``train.loader``."""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator

from microseg.model.batch import Batch
from microseg.model.networks import batch_of

COLUMNS = ["features", "traits", "trait_mask"]


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

    threading.Thread(target=work, name="loader-prefetch", daemon=True).start()
    while (item := items.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item
