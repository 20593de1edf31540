"""Aggregates that give the same bits for the same values, whatever order rows arrive in.

Spark adds doubles in arrival order, which moves with partitioning and shuffle timing, so
``sum`` and ``avg`` can differ in the last bits between two runs on the same input; that
is enough to move a KMeans start or a tree split. Here each value of a small group (a
customer's classes in a month, months in a window: at most 128 values) is rounded to a
fixed number of decimals and summed in integers, which is exact and as fast as a double
sum. Statistics over whole tables add in decimal, where squares fit.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

LIMIT = 2 ** 56   # per scaled value: 128 of them still sum inside a long
CENTS = 2         # amounts, balances and monthly spend are rounded to cents upstream

# Values of up to 10 integer digits and 18 decimals; the sum of squares (decimal(38,17))
# holds 21 integer digits: enough for 1e18 rows of log-scaled features (squares < 1e3).
EXACT = "decimal(28,18)"


def exact_sum(col: Column, decimals: int, name: str) -> Column:
    """Sum of the values rounded to ``decimals`` places; a value of LIMIT / 10**decimals or
    more fails the job naming ``name`` (what is summed, and from which table), whatever
    Spark's ANSI setting; never the value, which is a customer's."""
    scale = 10 ** decimals
    scaled = F.round(col * scale)
    limit = f"{LIMIT / scale:.3g}"
    checked = F.when(F.abs(scaled) >= LIMIT, F.raise_error(F.lit(
        f"{name}: a value of {limit} or more cannot be summed exactly at {decimals} decimals "
        "(the value is not shown: it is a customer's)"))).otherwise(scaled.cast("long"))
    return F.sum(checked) / scale


def exact_mean(col: Column, decimals: int, name: str) -> Column:
    """Mean of the non-null values rounded to ``decimals`` places; null when there are none."""
    return F.try_divide(exact_sum(col, decimals, name), F.count(col))


def exact_mean_std(col: Column) -> tuple[Column, Column]:
    """Mean and population standard deviation; null for a group without values."""
    value = col.cast(EXACT)
    mean = F.avg(value)
    variance = F.greatest(F.avg(value * value) - mean * mean, F.lit(0).cast(EXACT))
    return mean.cast("double"), F.when(F.count(value) > 0, F.sqrt(variance.cast("double")))
