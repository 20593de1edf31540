"""Aggregates that give the same bits for the same values, whatever order rows arrive in.

Spark adds doubles in arrival order, which moves with partitioning and shuffle timing, so
``sum`` and ``avg`` can differ in the last bits between two runs on the same input; that
is enough to move a KMeans start or a tree split. These add in decimal, where addition
is exact, and keep Spark's hash aggregation.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

# 18 decimals for values below 1e10 (larger ones fail loudly under ANSI mode): squares
# keep 17 decimals by Spark's decimal product rules, sums keep 20 integer digits.
EXACT = "decimal(28,18)"


def exact_sum(col: Column) -> Column:
    return F.sum(col.cast(EXACT)).cast("double")


def exact_mean(col: Column) -> Column:
    """Mean of the non-null values; null when there are none."""
    return F.avg(col.cast(EXACT)).cast("double")


def exact_mean_std(col: Column) -> tuple[Column, Column]:
    """Mean and population standard deviation."""
    value = col.cast(EXACT)
    mean = F.avg(value)
    variance = F.greatest(F.avg(value * value) - mean * mean, F.lit(0).cast(EXACT))
    return mean.cast("double"), F.sqrt(variance.cast("double"))
