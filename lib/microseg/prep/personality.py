"""Monthly spend per class -> spending personality per customer-month (gold).

A month's personality is the spend-share-weighted mean of the Big Five coefficients of
the classes bought that month. Months without spend get no row (no spend, no evidence);
the sequences stage masks them.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from microseg.prep.stable import CENTS, exact_sum
from microseg.taxonomy import TRAITS, Taxonomy


def coefficients(spark: SparkSession, taxonomy: Taxonomy) -> DataFrame:
    rows = [(name, *map(float, big5)) for name, big5 in taxonomy.coefficients().items()]
    return spark.createDataFrame(rows, ["txn_class", *TRAITS])


def spending_personality(monthly_spend: DataFrame, coefs: DataFrame) -> DataFrame:
    """customer x month: total spend and the five trait scores (exact sums: spend per class
    and month must stay below 7e9, or the job fails naming the column)."""
    spend = F.col("spend")
    name = "spend of silver.monthly_spend"
    return (
        monthly_spend.where(spend > 0)
        .join(F.broadcast(coefs), "txn_class")
        .groupBy("customer_id", "month")
        .agg(
            exact_sum(spend, CENTS, name).alias("total_spend"),
            *[(exact_sum(spend * F.col(t), 7, f"{name} x {t}") / exact_sum(spend, CENTS, name)).alias(t)
              for t in TRAITS],
        )
    )


def window_traits(sequences: DataFrame) -> DataFrame:
    """customer_id, embedding: each customer's mean trait vector over the months of their own
    window in ``gold.sequences`` (so up to their reference month) that have a personality;
    one row's own arrays, so the same bits whatever the row order."""
    n = len(TRAITS)
    weight = F.aggregate("trait_mask", F.lit(0.0).cast("double"), lambda acc, m: acc + m)

    def trait_sum(j: int):
        return F.aggregate(F.sequence(F.lit(0), F.size("trait_mask") - 1), F.lit(0.0).cast("double"),
                           lambda acc, t: acc + F.col("traits")[t * n + j] * F.col("trait_mask")[t])

    means = [trait_sum(j) / F.greatest(weight, F.lit(1.0)) for j in range(n)]
    return sequences.select("customer_id", F.array(*means).alias("embedding"))
