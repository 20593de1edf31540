"""Named Delta tables: where each lives, and the only place that reads or writes them.

Locally a table ``schema.table`` is a folder ``<root>/schema/table``; with
``tables.catalog`` set it is the metastore table ``catalog.schema.table``.

Concurrent writers: every write is one optimistic Delta commit; when a concurrent commit
conflicts with it (Delta's ``Concurrent*``, ``MetadataChanged``, ``ProtocolChanged``
exceptions) the whole write is tried again from the start, against the new table state,
with a jittered exponential backoff. A table that does not exist yet is created with a
write that fails if another writer created it first (then the write is retried as a merge
or replace on that table), so two first writers never overwrite each other.
``tables.pinned`` pins reads of a key to a Delta version (reproducing a recorded run).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from microseg.config import Settings

log = logging.getLogger("microseg.tables")
T = TypeVar("T")

# Delta's commit-conflict error classes, and "created by someone else first" on creation;
# matched in the message because PySpark raises them either converted or as Py4JJavaError.
RETRYABLE = re.compile(r"\[(DELTA_CONCURRENT_\w+|DELTA_METADATA_CHANGED|DELTA_PROTOCOL_CHANGED|"
                       r"DELTA_PATH_EXISTS|TABLE_OR_VIEW_ALREADY_EXISTS)\]")


def is_conflict(err: Exception) -> bool:
    """Whether ``err`` is a lost race with a concurrent writer (worth retrying)."""
    return bool(RETRYABLE.search(str(err)))


def _literal(value) -> str:
    """A SQL literal of a date, number or text (quotes doubled)."""
    if isinstance(value, dt.date):
        return f"DATE'{value.isoformat()}'"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


class Tables:
    def __init__(self, spark: SparkSession, cfg: Settings):
        self.spark = spark
        self.cfg = cfg.tables
        self.commit_note: str | None = None   # recorded as userMetadata on every commit
        self.attempts = 6                     # tries per write when concurrent commits conflict
        self.backoff_s = 0.5                  # first retry delay; doubles, with jitter

    def name(self, key: str) -> str:
        """``schema.table`` for a key; ``key@variant`` names the variant's own table
        (``segments@traits`` -> ``gold.segments_traits``)."""
        base, _, variant = key.partition("@")
        try:
            name = self.cfg.names[base]
        except KeyError:
            raise KeyError(f"no table {base!r} in tables.names; known: {sorted(self.cfg.names)}") from None
        return f"{name}_{variant}" if variant else name

    @property
    def root(self) -> Path:
        return Path(self.cfg.root).resolve()

    def location(self, key: str) -> str:
        """A path (local lakehouse) or a three-part name (catalog)."""
        name = self.name(key)
        if self.cfg.catalog:
            return f"{self.cfg.catalog}.{name}"
        return str(self.root.joinpath(*name.split(".")))

    def _delta(self, key: str) -> DeltaTable:
        if self.cfg.catalog:
            return DeltaTable.forName(self.spark, self.location(key))
        return DeltaTable.forPath(self.spark, self.location(key))

    def exists(self, key: str) -> bool:
        if self.cfg.catalog:
            return self.spark.catalog.tableExists(self.location(key))
        path = self.location(key)
        if DeltaTable.isDeltaTable(self.spark, path):
            return True
        # The session caches "no commits yet" for a folder that has a _delta_log (left by a
        # killed first write, say) and does not look again; another process may have
        # committed since. Look again, past the cache.
        jvm = self.spark.sparkContext._jvm
        jvm.org.apache.spark.sql.delta.DeltaLog.invalidateCache(self.spark._jsparkSession,
                                                                jvm.org.apache.hadoop.fs.Path(path))
        return DeltaTable.isDeltaTable(self.spark, path)

    def read(self, key: str, version: int | None = None) -> DataFrame:
        """The table at ``version``; by default the pinned version (``tables.pinned``), else
        the latest."""
        if version is None:
            version = self.cfg.pinned.get(key)
        if not self.exists(key):
            raise FileNotFoundError(
                f"table {self.name(key)} ({self.location(key)}) does not exist yet; "
                "run the stage that writes it first"
            )
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        if self.cfg.catalog:
            return reader.table(self.location(key))
        return reader.load(self.location(key))

    def _retrying(self, what: str, key: str, write: Callable[[], T]) -> T:
        """``write()``, run again from the start when it loses a race with a concurrent commit."""
        attempt = 1
        while True:
            try:
                return write()
            except Exception as err:
                if attempt == self.attempts or not is_conflict(err):
                    raise
                delay = self.backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
                attempt += 1
                log.warning("%s %s: concurrent commit (%s); retrying in %.1f s (attempt %d of %d)",
                            what, self.name(key), RETRYABLE.search(str(err)).group(1), delay,
                            attempt, self.attempts)
                time.sleep(delay)

    def _save(self, key: str, writer) -> None:
        if self.commit_note:
            writer = writer.option("userMetadata", self.commit_note)
        if self.cfg.catalog:
            writer.saveAsTable(self.location(key))
        else:
            writer.save(self.location(key))

    def _create(self, key: str, df: DataFrame, partition_by: list[str] | None = None,
                stats_columns: list[str] | None = None) -> None:
        """Create the table as version 0 with ``df``; fails if it exists (a concurrent
        writer created it first), which ``_retrying`` turns into another try.
        ``stats_columns``: the only columns whose file statistics Delta keeps
        (``delta.dataSkippingStatsColumns``), instead of the first 32."""
        writer = df.write.format("delta").mode("errorifexists")
        if stats_columns:
            writer = writer.option("delta.dataSkippingStatsColumns", ",".join(stats_columns))
        self._save(key, writer.partitionBy(*partition_by) if partition_by else writer)

    def overwrite(self, key: str, df: DataFrame, partition_by: list[str] | None = None) -> int:
        """Replace the table's content in one atomic commit; returns the new version."""
        def write() -> int:
            writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
            if partition_by:
                writer = writer.partitionBy(*partition_by)
            self._save(key, writer)
            return self._latest(key)

        return self._retrying("overwrite", key, write)

    def replace_where(self, key: str, df: DataFrame, condition: str, add_columns: bool = False) -> int:
        """Atomically replace the rows matching ``condition`` with ``df``; returns the version.
        ``add_columns``: columns ``df`` has and the table lacks are added (older rows null)."""
        def write() -> int:
            if not self.exists(key):
                self._create(key, df)
            else:
                writer = df.write.format("delta").mode("overwrite").option("replaceWhere", condition)
                self._save(key, writer.option("mergeSchema", "true") if add_columns else writer)
            return self._latest(key)

        return self._retrying("replace_where", key, write)

    def merge_new(self, key: str, df: DataFrame, keys: list[str], within: dict[str, list] | None = None,
                  partition_by: list[str] | None = None, stats_columns: list[str] | None = None) -> int:
        """Insert the rows of ``df`` whose ``keys`` the table lacks; returns rows inserted.

        Idempotent: merging the same rows again inserts (and commits) nothing. ``within``
        (column -> the values ``df`` holds) limits the table's side of the match to those
        values, so only their files are read; a new table is laid out by ``partition_by``
        and keeps statistics of ``stats_columns`` only (see ``_create``).
        """
        return self._retrying("merge_new", key, lambda: self._merge_new_once(key, df, keys, within or {},
                                                                             partition_by, stats_columns))

    def delete_where(self, key: str, condition: str) -> int:
        """Delete the rows matching ``condition`` in one commit; returns the rows deleted."""
        def write() -> int:
            with self._noted():
                return int(self.spark.sql(f"DELETE FROM {self._sql_name(key)} WHERE {condition}").head()[0])

        return self._retrying("delete_where", key, write)

    def keep_history(self, key: str, days: int) -> None:
        """Keep ``days`` of the table's history and no more: its log entries (dropped at
        checkpoints) and the data files only older versions read (``VACUUM``)."""
        interval = f"interval {days} days"
        wanted = {"delta.logRetentionDuration": interval, "delta.deletedFileRetentionDuration": interval}
        current = self._delta(key).detail().head()["properties"]
        props = ", ".join(f"'{k}' = '{v}'" for k, v in wanted.items())
        with self._noted():
            if any(current.get(k) != v for k, v in wanted.items()):   # also lets VACUUM go below 7 days
                self._retrying("keep_history", key, lambda: self.spark.sql(
                    f"ALTER TABLE {self._sql_name(key)} SET TBLPROPERTIES ({props})"))
            self._delta(key).vacuum(days * 24)

    def _sql_name(self, key: str) -> str:
        return self.location(key) if self.cfg.catalog else f"delta.`{self.location(key)}`"

    @contextmanager
    def _noted(self):
        """Commits inside record ``commit_note`` (SQL and merge writes take it from the session)."""
        meta_key = "spark.databricks.delta.commitInfo.userMetadata"
        if self.commit_note:
            self.spark.conf.set(meta_key, self.commit_note)
        try:
            yield
        finally:
            self.spark.conf.unset(meta_key)

    def _merge_new_once(self, key: str, df: DataFrame, keys: list[str], within: dict[str, list],
                        partition_by: list[str] | None, stats_columns: list[str] | None) -> int:
        if not self.exists(key):
            self._create(key, df, partition_by, stats_columns)
            created = self._delta(key).history().where("version = 0").head()
            return int(created["operationMetrics"].get("numOutputRows", 0))
        if any(not values for values in within.values()):
            return 0   # df holds no rows
        cond = " AND ".join([f"t.`{k}` = s.`{k}`" for k in keys]
                            + [f"t.`{c}` IN ({', '.join(_literal(v) for v in values)})"
                               for c, values in within.items()])
        with self._noted():
            metrics = (
                self._delta(key)
                .alias("t")
                .merge(df.alias("s"), cond)
                .whenNotMatchedInsertAll()
                .execute()
            ).head()
        return int(metrics["num_inserted_rows"])

    def version(self, key: str) -> int:
        """The version reads of ``key`` see: the pinned one (``tables.pinned``), else the latest."""
        pinned = self.cfg.pinned.get(key)
        return pinned if pinned is not None else self._latest(key)

    def _latest(self, key: str) -> int:
        return int(self._delta(key).history(1).select("version").head()[0])

    def history(self, key: str) -> DataFrame:
        return self._delta(key).history()

    def versions(self, keys: list[str]) -> dict[str, int]:
        """Current version of each existing table, for lineage records."""
        return {self.name(k): self.version(k) for k in keys if self.exists(k)}
