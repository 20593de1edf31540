"""Keyed pseudonyms for identifying values: HMAC-SHA256(key, utf8(value)) as 64 hex
characters, the same as Python's ``hmac`` module gives.

The key comes from a Databricks secret (``ingest.pseudonym_key_secret: scope/key``) or
else from an environment variable (``ingest.pseudonym_key_env``), never from config files:
only where to find it is configured, and the key never appears in logs or errors.

Nor in a query plan: the HMAC is a vectorised (Arrow) UDF that gets the key from a
broadcast variable, so plans (``explain``, the Spark UI's SQL tab, event logs) show the
UDF's name and never a literal derived from the key. A broadcast, not a read on the
executor, because a Databricks secret can only be read on the driver and an environment
variable set there need not reach the executors; not a value in the UDF's closure,
because the closure is pickled into the plan's Python function.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from microseg.config import ConfigError, IngestConfig

Pseudonym = Callable[[Column], Column]


def pseudonym_key(rules: IngestConfig, spark: SparkSession) -> bytes:
    """The pseudonym key: from the secret scope when ``pseudonym_key_secret`` is set, else
    from the environment variable ``pseudonym_key_env``."""
    if rules.pseudonym_key_secret:
        return key_from_secret(rules.pseudonym_key_secret, rules.pseudonym_key_env, spark)
    return key_from_env(rules.pseudonym_key_env)


def key_from_env(variable: str) -> bytes:
    return _checked(os.environ.get(variable, ""), f"the environment variable {variable}",
                    "set it from your secret store")


def key_from_secret(name: str, variable: str, spark: SparkSession) -> bytes:
    """The secret ``scope/key`` through Databricks' ``dbutils``."""
    scope, _, key = name.partition("/")
    if not (scope and key):
        raise ConfigError(f"ingest.pseudonym_key_secret is {name!r}; write 'scope/key'")
    try:
        from pyspark.dbutils import DBUtils
    except ImportError:
        raise ConfigError("ingest.pseudonym_key_secret is set, but secret scopes need Databricks; elsewhere "
                          f"leave it null and put the key in the environment variable {variable} "
                          "(ingest.pseudonym_key_env)") from None
    try:
        value = DBUtils(spark).secrets.get(scope, key)
    except Exception as err:  # its text is not passed on: only its kind, never a value
        raise ConfigError(f"cannot read the secret {key!r} of scope {scope!r} "
                          f"(ingest.pseudonym_key_secret): {type(err).__name__}") from None
    return _checked(value, f"the secret {name}", "put a longer key in it")


def _checked(key: str, where: str, fix: str) -> bytes:
    if len(key) < 16:
        raise ConfigError(f"ingest.pseudonymise is on but {where} holds "
                          f"{'no key' if not key else 'a key shorter than 16 characters'}; {fix} "
                          "(the key itself never goes in a config file)")
    return key.encode()


def keyed_hmac(spark: SparkSession, key: bytes) -> Pseudonym:
    """A column function: HMAC-SHA256(key, utf8(value)) as hex; null stays null."""
    shared = spark.sparkContext.broadcast(key)

    @F.pandas_udf("string")
    def hmac_sha256_hex(values: pd.Series) -> pd.Series:
        key = shared.value
        return pd.Series([None if v is None else hmac.digest(key, v.encode(), "sha256").hex() for v in values],
                         dtype=object)

    return hmac_sha256_hex


def configured_pseudonym(rules: IngestConfig, spark: SparkSession) -> Pseudonym | None:
    """The pseudonym bronze's ids carry (``ingest.pseudonymise``), or None when they are
    real: what any table joined to bronze by customer id must apply too."""
    return keyed_hmac(spark, pseudonym_key(rules, spark)) if rules.pseudonymise else None


def _pseudonym(col: Column, pseudonym: Pseudonym) -> Column:
    """The pseudonym of the trimmed value; blank values stay as they are, so validation
    still quarantines them."""
    value = F.trim(col)
    return F.when(value == "", col).otherwise(pseudonym(value))


def pseudonymise(df: DataFrame, columns: list[str], pseudonym: Pseudonym) -> DataFrame:
    """``df`` with each of ``columns`` replaced by its pseudonym."""
    return df.withColumns({c: _pseudonym(F.col(c), pseudonym) for c in columns})


def pseudonymise_raw_rows(quarantine: DataFrame, fields: list[str], pseudonym: Pseudonym) -> DataFrame:
    """Quarantine rows whose ``raw_row`` holds no real id.

    A row read into fields (``raw_row`` a JSON object of the source's columns) keeps every
    field but the identifying ones (``fields``: the source columns of the customer and
    transaction ids and any the mapping marks ``identifying``), which become their
    pseudonyms, as in bronze: pseudonymising fields rather than encrypting the row keeps
    rejected rows readable for repair, and joinable to bronze, without a second key to
    guard. A line that did not split into fields (``MALFORMED_LINE``) keeps only its
    shape (every letter and digit becomes ``x``): an id could be anywhere in it. The
    ``source_file`` stays, so the row can be found in the bank's own file.
    """
    names = list(dict.fromkeys(fields))
    parsed = F.from_json("raw_row", "map<string,string>")
    out = quarantine.withColumn("_fields", parsed)
    out = out.withColumns({f"_p{i}": _pseudonym(F.col("_fields")[name], pseudonym) for i, name in enumerate(names)})

    def swap(key: Column, value: Column) -> Column:
        for i, name in enumerate(names):
            value = F.when(key == name, F.col(f"_p{i}")).otherwise(value)
        return value

    shape = F.regexp_replace("raw_row", r"[\p{L}\p{N}]", "x")
    raw_row = F.when(F.col("reason") == "MALFORMED_LINE", shape).otherwise(
        F.to_json(F.transform_values("_fields", swap)))
    return out.withColumn("raw_row", raw_row).drop("_fields", *[f"_p{i}" for i in range(len(names))])
