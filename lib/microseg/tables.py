"""Named Delta tables: where each lives, and the only place that reads or writes them.

Locally a table ``schema.table`` is a folder ``<root>/schema/table``; with
``tables.catalog`` set it is the metastore table ``catalog.schema.table``.
"""

from __future__ import annotations

from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from microseg.config import Settings


class Tables:
    def __init__(self, spark: SparkSession, cfg: Settings):
        self.spark = spark
        self.cfg = cfg.tables
        self.commit_note: str | None = None   # recorded as userMetadata on every commit

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
        return DeltaTable.isDeltaTable(self.spark, self.location(key))

    def read(self, key: str, version: int | None = None) -> DataFrame:
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

    def overwrite(self, key: str, df: DataFrame, partition_by: list[str] | None = None) -> int:
        """Replace the table's content in one atomic commit; returns the new version."""
        writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
        if self.commit_note:
            writer = writer.option("userMetadata", self.commit_note)
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        if self.cfg.catalog:
            writer.saveAsTable(self.location(key))
        else:
            writer.save(self.location(key))
        return self.version(key)

    def replace_where(self, key: str, df: DataFrame, condition: str) -> int:
        """Atomically replace the rows matching ``condition`` with ``df``; returns the version."""
        if not self.exists(key):
            return self.overwrite(key, df)
        writer = df.write.format("delta").mode("overwrite").option("replaceWhere", condition)
        if self.commit_note:
            writer = writer.option("userMetadata", self.commit_note)
        if self.cfg.catalog:
            writer.saveAsTable(self.location(key))
        else:
            writer.save(self.location(key))
        return self.version(key)

    def merge_new(self, key: str, df: DataFrame, keys: list[str]) -> int:
        """Insert the rows of ``df`` whose ``keys`` the table lacks; returns rows inserted.

        Idempotent: merging the same rows again inserts (and commits) nothing.
        """
        if not self.exists(key):
            self.overwrite(key, df)
            return int(self.history(key).head()["operationMetrics"].get("numOutputRows", 0))
        before = self.version(key)
        cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        meta_key = "spark.databricks.delta.commitInfo.userMetadata"
        if self.commit_note:
            self.spark.conf.set(meta_key, self.commit_note)
        try:
            (
                self._delta(key)
                .alias("t")
                .merge(df.alias("s"), cond)
                .whenNotMatchedInsertAll()
                .execute()
            )
        finally:
            self.spark.conf.unset(meta_key)
        last = self._delta(key).history(1).head()
        if last["version"] == before:
            return 0
        return int(last["operationMetrics"].get("numTargetRowsInserted", 0))

    def version(self, key: str) -> int:
        return int(self._delta(key).history(1).select("version").head()[0])

    def history(self, key: str) -> DataFrame:
        return self._delta(key).history()

    def versions(self, keys: list[str]) -> dict[str, int]:
        """Current version of each existing table, for lineage records."""
        return {self.name(k): self.version(k) for k in keys if self.exists(k)}
