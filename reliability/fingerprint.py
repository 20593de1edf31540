"""A table's content in three numbers, computed in Spark (no rows reach the driver).

``rows`` and ``keys`` (distinct key tuples: ``keys < rows`` means duplicates), and
``digest``: the sum, as an exact decimal, of a 64-bit hash of every row. The hash is
xxhash64 over the column values themselves (floats and float arrays by their bits, maps as
their sorted entries), so equal digests mean equal multisets of rows up to hash
collisions; the sum does not depend on row order or partitioning.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import MapType

# The key of each table the trials check, for the duplicate count.
KEYS = {
    "transactions": ["source", "txn_id"],
    "quarantine": None,                  # rejected rows verbatim: no key, whole rows compared
    "monthly_spend": ["customer_id", "month", "txn_class"],
    "monthly_account": ["customer_id", "month"],
    "sequences": ["customer_id"],
    "feature_stats": ["index"],
    "embeddings": ["customer_id", "as_of"],
    "segment_centroids": ["model_version", "level", "segment"],
    "segments": ["customer_id", "as_of"],
    "segment_profiles": ["as_of", "segment"],
}

# Lineage, not content: the Delta version a row was derived from. A re-run after a kill
# commits one version more than a clean run, so this differs while the data does not.
LINEAGE = {"feature_stats": ["sequences_version"]}


@dataclass(frozen=True)
class Fingerprint:
    rows: int
    keys: int
    digest: str

    @property
    def duplicates(self) -> int:
        return self.rows - self.keys

    def as_dict(self) -> dict:
        return asdict(self)


ABSENT = Fingerprint(0, 0, "absent")   # the table does not exist


def fingerprint(df: DataFrame, keys: list[str] | None, ignore: list[str] = ()) -> Fingerprint:
    cols = [F.array_sort(F.map_entries(f.name)) if isinstance(f.dataType, MapType) else F.col(f.name)
            for f in df.schema.fields if f.name not in ignore]
    key_count = F.count_distinct(*keys) if keys else F.count_distinct(F.struct(*cols))
    row = df.agg(F.count(F.lit(1)).alias("rows"), key_count.alias("keys"),
                 F.sum(F.xxhash64(*cols).cast("decimal(38,0)")).alias("digest")).head()
    return Fingerprint(int(row["rows"]), int(row["keys"]), str(row["digest"] or 0))


def table_fingerprint(tables, key: str) -> Fingerprint:
    """The latest version of table ``key`` as a reader sees it (ABSENT if not created)."""
    if not tables.exists(key):
        return ABSENT
    return fingerprint(tables.read(key), KEYS[key], LINEAGE.get(key, []))
