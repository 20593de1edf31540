"""Aggregates that give the same bits for the same values, whatever order rows arrive in.

Spark adds doubles in arrival order, which moves with partitioning and shuffle timing, so
``sum`` and ``avg`` can differ in the last bits between two runs on the same input; that
is enough to move a KMeans start or a tree split. Here each value is first rounded to a
fixed number of decimals and the sum is taken in integers (exact, and as fast as a double
sum); statistics over whole tables, where squares would overflow integers, add in decimal.
A value too large for its scale fails the job under ANSI mode (Spark 4's default)
instead of wrapping.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

# 18 decimals for values below 1e10: squares keep 17 decimals by Spark's decimal product
# rules, sums keep 20 integer digits.
EXACT = "decimal(28,18)"


def exact_sum(col: Column, decimals: int) -> Column:
    """Sum of the values rounded to ``decimals`` places (|value| below 9e18 / 10**decimals)."""
    scale = 10 ** decimals
    return F.sum(F.round(col * scale).cast("long")) / scale


def exact_mean(col: Column, decimals: int) -> Column:
    """Mean of the non-null values rounded to ``decimals`` places; null when there are none."""
    return F.try_divide(exact_sum(col, decimals), F.count(col))


def exact_mean_std(col: Column) -> tuple[Column, Column]:
    """Mean and population standard deviation of any number of values."""
    value = col.cast(EXACT)
    mean = F.avg(value)
    variance = F.greatest(F.avg(value * value) - mean * mean, F.lit(0).cast(EXACT))
    return mean.cast("double"), F.sqrt(variance.cast("double"))
