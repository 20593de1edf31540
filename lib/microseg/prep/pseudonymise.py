"""Keyed pseudonyms for customer ids: HMAC-SHA256 in Spark SQL, no Python UDF.

The key comes from an environment variable (on Databricks, set it from a secret scope in
the cluster or job configuration), never from config files; only the variable's name is
configured, and the key never appears in logs or errors.
"""

from __future__ import annotations

import hashlib
import os

from pyspark.sql import Column
from pyspark.sql import functions as F

from microseg.config import ConfigError

BLOCK = 64  # SHA-256 block size in bytes


def key_from_env(variable: str) -> bytes:
    key = os.environ.get(variable, "")
    if len(key) < 16:
        raise ConfigError(f"ingest.pseudonymise is on but the environment variable {variable} holds "
                          f"{'no key' if not key else 'a key shorter than 16 characters'}; set it from "
                          "your secret store (the key itself never goes in a config file)")
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
