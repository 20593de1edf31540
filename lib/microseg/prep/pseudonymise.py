"""Keyed pseudonyms for customer ids: HMAC-SHA256 in Spark SQL, no Python UDF.

The key comes from a Databricks secret (``ingest.pseudonym_key_secret: scope/key``) or
else from an environment variable (``ingest.pseudonym_key_env``), never from config files:
only where to find it is configured, and the key never appears in logs or errors.
"""

from __future__ import annotations

import hashlib
import os

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from microseg.config import ConfigError, IngestConfig

BLOCK = 64  # SHA-256 block size in bytes


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


def hmac_sha256_hex(col: Column, key: bytes) -> Column:
    """HMAC-SHA256(key, utf8(col)) as 64 hex characters (RFC 2104); null stays null."""
    if len(key) > BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(BLOCK, b"\0")
    ipad = bytearray(b ^ 0x36 for b in key)
    opad = bytearray(b ^ 0x5C for b in key)
    inner = F.unhex(F.sha2(F.concat(F.lit(ipad), F.encode(col, "UTF-8")), 256))
    return F.when(col.isNotNull(), F.sha2(F.concat(F.lit(opad), inner), 256))


def pseudonymise(df, column: str, key: bytes):
    """``df`` with ``column`` replaced by its pseudonym (blank ids stay as they are, so
    validation still quarantines them)."""
    value = F.trim(F.col(column))
    return df.withColumn(column, F.when(value == "", F.col(column)).otherwise(hmac_sha256_hex(value, key)))
