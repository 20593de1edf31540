"""Training data as a Parquet cache written by Spark, read by each rank with pyarrow.

Spark writes the rows once (``write_cache``), so Delta's deletion vectors and column mapping
are applied by Delta itself, not by a reader of the table's files. Each rank then reads its
own contiguous range of rows (row groups, sliced at the edges: no rank is empty while there
are at least as many rows as ranks) through a seeded shuffle buffer. Nothing is collected
to the driver but the files' row-group sizes. Works with pyarrow 14 and 19.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from pyspark.sql import DataFrame

from microseg.model.data import COLUMNS, prefetch

SHUFFLE_ROWS = 4096              # rows held in a rank's shuffle buffer
ROW_GROUP_BYTES = 8 << 20        # small row groups: more of them to shuffle and to split


@dataclass(frozen=True)
class ArrowData:
    """A cached table: its files' row groups in a fixed order, and their row counts."""

    path: str
    row_groups: tuple[tuple[str, int, int], ...]   # (file, row group, rows)

    @property
    def rows(self) -> int:
        return sum(n for _, _, n in self.row_groups)

    def shard(self, shard: int, world: int) -> list[tuple[str, int, int, int]]:
        """Rank ``shard``'s pieces (file, row group, first row, stop row): rows
        [shard * rows // world, (shard + 1) * rows // world) of the table."""
        lo, hi = shard * self.rows // world, (shard + 1) * self.rows // world
        pieces, start = [], 0
        for file, group, n in self.row_groups:
            a, b = max(lo, start) - start, min(hi, start + n) - start
            if a < b:
                pieces.append((file, group, a, b))
            start += n
        return pieces

    def training_batches(self, batch_size: int, steps: int, seed: int,
                         shard: int = 0, world: int = 1) -> Iterator[dict]:
        """Exactly ``steps`` batches of ``batch_size`` rows from an endless stream of this
        rank's rows: each pass visits the row groups in a seeded order and shuffles rows
        across them in a buffer, and every row of a pass comes out before the next pass."""
        if self.rows < world:
            raise RuntimeError(f"{self.rows} training rows for {world} ranks: every rank needs one; "
                               "lower train.num_processes")
        rng = np.random.default_rng([seed, shard])
        pieces = self.shard(shard, world)

        def rows() -> Iterator[dict[str, np.ndarray]]:
            while True:
                yield from _shuffled(_read(pieces[i] for i in rng.permutation(len(pieces))), rng)

        return prefetch(lambda: _batches(rows(), batch_size, steps))

    def all_batches(self, batch_size: int, shard: int = 0, world: int = 1) -> Iterator[dict]:
        """One pass over this rank's rows, in order; the last batch may be short."""
        return _batches(_read(self.shard(shard, world)), batch_size)


def write_cache(df: DataFrame, cache_dir: str | Path, table: str, version: int, split: str,
                partitions: int) -> ArrowData:
    """Write ``df`` (``table`` at ``version``, its ``split`` rows) once to
    ``cache_dir/<table>-v<version>-<split>``, hash-partitioned and sorted by customer so the
    files are the same on every run, and list its row groups. A finished cache
    (``_SUCCESS``) is reused; caches of other versions of that table and split are removed."""
    path = Path(cache_dir) / f"{table}-v{version}-{split}"
    if not (path / "_SUCCESS").exists():
        for old in Path(cache_dir).glob(f"{table}-v*-{split}*"):
            shutil.rmtree(old, ignore_errors=True)
        tmp = path.with_name(path.name + ".tmp")
        (df.repartition(partitions, "customer_id").sortWithinPartitions("customer_id")
         .select(*COLUMNS).write.mode("overwrite").option("parquet.block.size", ROW_GROUP_BYTES)
         .parquet(str(tmp)))
        tmp.rename(path)
    groups = []
    for file in sorted(path.glob("*.parquet")):
        meta = pq.ParquetFile(file).metadata
        groups += [(str(file), g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)
                   if meta.row_group(g).num_rows]
    return ArrowData(str(path), tuple(groups))


def _arrays(table: pa.Table) -> dict[str, np.ndarray]:
    """Each list column -> a float32 [rows, length] array (every row has the same length)."""
    out = {}
    for name in COLUMNS:
        column = table.column(name).combine_chunks()
        values = np.array(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)  # writable
        out[name] = values.reshape(len(column), -1)
    return out


def _read(pieces) -> Iterator[dict[str, np.ndarray]]:
    files: dict[str, pq.ParquetFile] = {}
    for file, group, a, b in pieces:
        handle = files.setdefault(file, pq.ParquetFile(file))
        yield _arrays(handle.read_row_group(group, columns=COLUMNS).slice(a, b - a))


def _shuffled(chunks: Iterator[dict], rng: np.random.Generator) -> Iterator[dict]:
    """Rows through a buffer of ``SHUFFLE_ROWS``: it fills from the first chunks; then each
    incoming row takes the place of a row drawn at random, which leaves (rows a chunk brings
    beyond the buffer's size leave in random order); at the end the buffer empties in random
    order. Each row is copied in and out once, whatever the buffer's size."""
    pool: dict[str, np.ndarray] = {}
    held = 0
    for chunk in chunks:
        if not pool:
            pool = {k: np.empty((SHUFFLE_ROWS, *v.shape[1:]), v.dtype) for k, v in chunk.items()}
        fill = min(SHUFFLE_ROWS - held, len(chunk[COLUMNS[0]]))
        for k, v in chunk.items():
            pool[k][held:held + fill] = v[:fill]
        held += fill
        rest = {k: v[fill:] for k, v in chunk.items()}
        swap = min(len(rest[COLUMNS[0]]), SHUFFLE_ROWS)
        if swap == 0:
            continue
        slots = rng.choice(SHUFFLE_ROWS, size=swap, replace=False)
        out = {k: pool[k][slots] for k in pool}
        for k in pool:
            pool[k][slots] = rest[k][:swap]
        beyond = len(rest[COLUMNS[0]]) - swap
        if beyond:
            order = swap + rng.permutation(beyond)
            out = {k: np.concatenate([out[k], rest[k][order]]) for k in out}
        yield out
    if held:
        order = rng.permutation(held)
        yield {k: v[order] for k, v in pool.items()}


def _batches(chunks: Iterator[dict], batch_size: int, steps: int | None = None) -> Iterator[dict]:
    """Cut a stream of row chunks into batches of ``batch_size`` (torch tensors); with
    ``steps``, exactly that many full batches, else every row (the last batch may be short).
    Only a batch that spans two chunks is copied; the others are views."""
    held: dict[str, np.ndarray] | None = None   # fewer than batch_size rows, from earlier chunks
    made = 0
    for chunk in chunks:
        start, n = 0, len(chunk[COLUMNS[0]])
        if held is not None:
            start = min(batch_size - len(held[COLUMNS[0]]), n)
            held = {k: np.concatenate([held[k], chunk[k][:start]]) for k in COLUMNS}
            if len(held[COLUMNS[0]]) < batch_size:
                continue
            yield {k: torch.from_numpy(v) for k, v in held.items()}
            held, made = None, made + 1
            if made == steps:
                return
        while n - start >= batch_size:
            yield {k: torch.from_numpy(chunk[k][start:start + batch_size]) for k in COLUMNS}
            start, made = start + batch_size, made + 1
            if made == steps:
                return
        if start < n:
            held = {k: chunk[k][start:] for k in COLUMNS}
    if steps is None and held is not None:
        yield {k: torch.from_numpy(v) for k, v in held.items()}
