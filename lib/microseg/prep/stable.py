"""Aggregates that give the same bits for the same values, whatever order rows arrive in.

Spark adds doubles in arrival order, which moves with partitioning and shuffle timing, so
``sum`` and ``avg`` can differ in the last bits between two runs on the same input; that
is enough to move a KMeans start or a tree split. Here each value of a small group (a
customer's classes in a month, months in a window: at most 128 values) is rounded to a
fixed number of decimals and summed in integers, which is exact and as fast as a double
sum. Statistics over whole tables add in integers within hash buckets, then in decimal
across the buckets, where squares fit.

Rounding is half to even (``rint``): Spark's ``round`` of a double builds a Java BigDecimal
for every row, and the feature statistics took three to four times as long with it.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

LIMIT = 2 ** 56   # per scaled value: 128 of them still sum inside a long
CENTS = 2         # amounts, balances and monthly spend are rounded to cents upstream

STAT_DECIMALS = 9   # table-wide statistics of float features (7 significant digits)
BUCKETS = 1024      # a bucket's long sum holds 9e6 squares of up to 1e3; beyond, the job fails


def _checked_long(scaled: Column, bound: Column, message: str) -> Column:
    """``scaled`` as a long, never cast while ``bound`` is LIMIT or more: then the job fails
    with ``message`` (a cast's own overflow error would show the value)."""
    return F.when(F.abs(bound) >= LIMIT, F.raise_error(F.lit(message))).otherwise(scaled.cast("long"))


def exact_sum(col: Column, decimals: int, name: str) -> Column:
    """Sum of the values rounded to ``decimals`` places; a value of LIMIT / 10**decimals or
    more fails the job naming ``name`` (what is summed, and from which table), whatever
    Spark's ANSI setting; never the value, which is a customer's."""
    scale = 10 ** decimals
    scaled = F.rint(col * scale)
    checked = _checked_long(scaled, scaled, f"{name}: a value of {LIMIT / scale:.3g} or more cannot be summed "
                            f"exactly at {decimals} decimals (the value is not shown: it is a customer's)")
    return F.sum(checked) / scale


def exact_mean(col: Column, decimals: int, name: str) -> Column:
    """Mean of the non-null values rounded to ``decimals`` places; null when there are none."""
    return F.try_divide(exact_sum(col, decimals, name), F.count(col))


def exact_mean_std(df: DataFrame, by: str, value: str, spread: Column) -> DataFrame:
    """``by``, ``mean``, ``std`` (population): the statistics of ``value`` per ``by`` group,
    values rounded to ``STAT_DECIMALS`` places. Values are summed in longs within
    ``BUCKETS`` buckets of ``spread`` (a hash of the row, e.g. its customer and month), then
    in decimal across buckets. A value of about 8,500 or more (its scaled square reaches
    ``LIMIT``), or a bucket whose sum leaves a long, fails the job naming ``value`` only."""
    scale = 10 ** STAT_DECIMALS
    v = F.col(value)
    square = F.rint(v * v * scale)
    too_big = (f"{value}: a value of {(LIMIT / scale) ** 0.5:.3g} or more has no exact statistics "
               "(the value is not shown)")
    parts = (df.where(v.isNotNull())
             .groupBy(by, F.pmod(spread, F.lit(BUCKETS)).alias("_bucket"))
             .agg(F.count(F.lit(1)).alias("n"),
                  F.try_sum(_checked_long(F.rint(v * scale), square, too_big)).alias("s"),
                  F.try_sum(_checked_long(square, square, too_big)).alias("q")))
    wide = "decimal(38,0)"
    sums = parts.groupBy(by).agg(
        F.sum("n").alias("n"), F.sum(F.col("s").cast(wide)).alias("s"), F.sum(F.col("q").cast(wide)).alias("q"),
        F.max(F.col("s").isNull() | F.col("q").isNull()).alias("overflow"))
    mean = F.col("s").cast("double") / F.col("n") / scale
    variance = F.greatest(F.col("q").cast("double") / F.col("n") / scale - mean * mean, F.lit(0.0))
    return sums.select(
        by,
        F.when(F.col("overflow"), F.raise_error(F.lit(
            f"{value}: too many values in one of {BUCKETS} buckets to sum exactly"))).otherwise(mean).alias("mean"),
        F.sqrt(variance).alias("std"))
