"""The canonical transaction contract every source adapter produces.

An adapter turns one source's files into rows of ``CANONICAL``: parsed values where they
parse, ``null`` where they do not, the source row verbatim in ``raw_row`` (JSON), the file
it came from in ``source_file``, and ``parse_error`` set to a reason code when the row
could not be read at all (``MALFORMED_LINE``, ``BAD_ENCODING``), a field did not parse
(``UNPARSABLE_DATE``, ``UNPARSABLE_AMOUNT``, ``UNPARSABLE_BALANCE``) or contradicts the
source's own rules (``NEGATIVE_AMOUNT``, ``UNKNOWN_CATEGORY``). Validation
(``prep.ingest``) then applies the same rules to every source.

A file that is wrong as a whole (missing a mapped column, empty, wrong format, a header
that is not text in its encoding or unlike the other files') raises :class:`SourceError`
naming the file and the column before anything is written.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql.types import DateType, DoubleType, StringType, StructField, StructType

CANONICAL = StructType(
    [
        StructField("customer_id", StringType(), True),
        StructField("txn_id", StringType(), True),
        StructField("booking_date", DateType(), True),
        StructField("amount", DoubleType(), True),       # signed: credits > 0, debits < 0
        StructField("currency", StringType(), True),
        StructField("category", StringType(), True),     # a taxonomy class name, or null if unknown
        StructField("raw_category", StringType(), True),  # the source's own code, for the record
        StructField("balance_after", DoubleType(), True),
        StructField("source_file", StringType(), True),
        StructField("raw_row", StringType(), True),
        StructField("parse_error", StringType(), True),
    ]
)

# Columns an adapter must be able to fill from every file of a source.
REQUIRED = ("customer_id", "txn_id", "booking_date", "amount")


# What a decoder puts in place of bytes that are not text in the file's encoding.
REPLACEMENT = "\ufffd"


class SourceError(ValueError):
    """A source file cannot be read as a whole; the message names the file and what to do."""


def conform(df: DataFrame) -> DataFrame:
    """Select the canonical columns in order, cast to the contract's types."""
    missing = [f.name for f in CANONICAL if f.name not in df.columns]
    if missing:
        raise SourceError(f"adapter output lacks canonical columns {missing}")
    return df.select(*[df[f.name].cast(f.dataType).alias(f.name) for f in CANONICAL])


def shown_header(found: list[str], expected: Iterable[str]) -> str:
    """A header for an error message: as found when it names an expected column, else only
    its width (a file without a header has a customer's row in its place)."""
    if set(found) & set(expected):
        return str(found)
    return f"{len(found)} column(s), none of them expected (no header row? its values are not shown)"


def undecodable(*fields: Column) -> Column:
    """True where the row (its raw text, or its fields) held bytes that are not text in the
    file's encoding (e.g. Latin-1 read as UTF-8): such a row is quarantined as
    ``BAD_ENCODING``, never kept with a garbled id."""
    return reduce(operator.or_, [field.contains(REPLACEMENT) for field in fields])
