"""The arrow loader: a Spark-written Parquet cache of a Delta version, read per rank with
pyarrow through a seeded row-level shuffle buffer, a fixed step count and no empty shard."""

import importlib.util

import numpy as np
import pyarrow.parquet as pq
import pytest

from microseg.model import data
from microseg.model.loader_arrow import write_cache

L = 6   # values per row (months x features)


def _frame(spark, n: int):
    """Rows whose features all equal the row's number: a batch says which rows it holds."""
    rows = [(f"C{i:05d}", [float(i)] * L, [0.5] * L, [1.0] * 2) for i in range(n)]
    return spark.createDataFrame(rows, "customer_id string, features array<float>, traits array<float>, "
                                       "trait_mask array<float>")


def _ids(batches) -> list[int]:
    return [int(v) for b in batches for v in b["features"][:, 0].tolist()]


@pytest.fixture(scope="module")
def cached(spark, tmp_path_factory):
    return write_cache(_frame(spark, 300), tmp_path_factory.mktemp("arrow"), "t", 1, "train", 4)


def test_batches_are_fixed_in_number_and_size_and_the_same_under_a_seed(cached):
    first = list(cached.training_batches(32, 7, seed=5))
    assert len(first) == 7 and {len(b["features"]) for b in first} == {32}
    assert first[0]["features"].shape == (32, L) and str(first[0]["features"].dtype) == "torch.float32"
    assert _ids(first) == _ids(cached.training_batches(32, 7, seed=5))
    assert _ids(first) != _ids(cached.training_batches(32, 7, seed=6))


def test_rows_are_shuffled_across_row_groups_not_only_the_groups(cached):
    """The files are sorted by customer; a batch of one row group's run would be a run of
    neighbours in that order. Shuffled rows: the first batch draws from several files."""
    assert len(cached.row_groups) >= 4
    file_of = {}
    for file, group, *_ in cached.row_groups:
        for i in pq.ParquetFile(file).read_row_group(group, columns=["features"]).column(0).to_pylist():
            file_of[int(i[0])] = file
    batch = _ids(cached.training_batches(32, 1, seed=1))
    assert len({file_of[i] for i in batch}) >= 3
    assert batch != sorted(batch)


def test_every_row_is_seen_each_epoch_across_two_ranks(cached):
    steps = data.steps_per_epoch(cached.rows, 32, world=2)
    shards = [_ids(cached.training_batches(32, steps, seed=9, shard=r, world=2)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == steps * 32      # ranks in lockstep
    assert set(shards[0]) | set(shards[1]) == set(range(300))
    assert not set(cached.shard(0, 2)) & set(cached.shard(1, 2))
    assert sum(b - a for *_, a, b in cached.shard(0, 2)) == 150


def test_one_pass_in_order_with_a_short_last_batch(cached):
    batches = list(cached.all_batches(64))
    assert [len(b["features"]) for b in batches] == [64, 64, 64, 64, 44]
    assert sorted(_ids(batches)) == list(range(300))
    assert _ids(batches) == _ids(cached.all_batches(64))


def test_no_rank_is_empty_with_fewer_row_groups_than_ranks(spark, tmp_path):
    tiny = write_cache(_frame(spark, 3), tmp_path, "t", 1, "train", 1)
    assert len(tiny.row_groups) == 1
    shards = [_ids(tiny.training_batches(2, 2, seed=0, shard=r, world=2)) for r in (0, 1)]
    assert all(len(s) == 4 for s in shards)
    assert set(shards[0]).isdisjoint(shards[1]) and set(shards[0]) | set(shards[1]) == {0, 1, 2}


def test_the_cache_is_written_once_per_version(spark, tmp_path):
    df = _frame(spark, 20)
    v1 = write_cache(df, tmp_path, "t", 1, "train", 2)
    stamp = (tmp_path / "t-v1-train" / "_SUCCESS").stat().st_mtime_ns
    assert write_cache(df, tmp_path, "t", 1, "train", 2) == v1
    assert (tmp_path / "t-v1-train" / "_SUCCESS").stat().st_mtime_ns == stamp
    write_cache(df.limit(5), tmp_path, "t", 2, "train", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t-v2-train"]


def test_a_row_deleted_through_a_deletion_vector_is_not_read(spark, tmp_path):
    """Delta marks the row deleted in a deletion vector and leaves it in the data file; the
    cache comes from Spark reading the version, so the loader never sees it."""
    path = str(tmp_path / "delta")
    _frame(spark, 40).coalesce(1).write.format("delta").option("delta.enableDeletionVectors", "true").save(path)
    spark.sql(f"DELETE FROM delta.`{path}` WHERE customer_id = 'C00007'")
    history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").where("operation = 'DELETE'").first()
    assert int(history["operationMetrics"]["numDeletionVectorsAdded"]) == 1
    in_files = {int(r[0]) for f in (tmp_path / "delta").glob("*.parquet")
                for r in pq.read_table(f, columns=["features"]).column(0).to_pylist()}
    assert 7 in in_files                                   # still in the data file

    version = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").first()["version"]
    table = spark.read.format("delta").option("versionAsOf", version).load(path)
    cached = write_cache(table, tmp_path / "cache", "t", version, "train", 2)
    ids = _ids(cached.all_batches(16))
    assert 7 not in ids and sorted(ids) == [i for i in range(40) if i != 7]


@pytest.mark.skipif(importlib.util.find_spec("petastorm") is not None, reason="petastorm is installed here")
def test_choosing_petastorm_where_it_is_not_installed_says_what_to_set(spark, tmp_path):
    from microseg.model.loaders import training_data

    df = _frame(spark, 10)
    with pytest.raises(RuntimeError, match="set train.loader=arrow"):
        with training_data("petastorm", df, df, tmp_path, "t", 1, 2):
            pass


def test_the_same_arrays_as_the_list_columns(cached):
    """The flat-array conversion keeps each row's values in order (pyarrow 14 and 19)."""
    batch = next(iter(cached.all_batches(8)))
    assert np.array_equal(batch["traits"].numpy(), np.full((8, L), 0.5, dtype="float32"))
    assert batch["trait_mask"].shape == (8, 2)
