"""Silver + personality -> one row per customer: the T months up to the customer's
reference month as model input (gold).

Each customer's window ends at their own ``reference_month`` (``prep/reference.py``: the
run's ``as_of``, or e.g. the month their loan was granted); no later month enters the
features, the traits or the feature scaling. Each row holds flat float arrays (row-major,
month by month) so that Petastorm and the scoring UDF move one contiguous block per customer:

- ``features``  [T x F]: per spend class log1p(spend), spend share, log1p(count); then
  log1p(income), log1p(outflow), signed log1p(end balance); then the calendar month as
  sine and cosine of the month of the year (zero on months without activity, so a month
  is active exactly where a feature is non-zero; ``model.layout``);
- ``traits``    [T x 5]: each month's spending personality (the encoder's objective builds
  its targets from these and the features: ``model/objectives.py``);
- ``trait_mask`` [T]: 1 where the month has a spending personality;
- ``active``    [T]: 1 for months with any transaction.

``as_of`` is the run's month (one value per build), ``reference_month`` the customer's.
Months before a customer's first activity are zeros (left padding). Customers with fewer
than ``min_months`` active months stay in the table with ``eligible = false`` and a reason;
customers without activity in their window are left out.
"""

from __future__ import annotations

import datetime as dt
import math

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from microseg.config import SequencesConfig
from microseg.prep.stable import CENTS, exact_mean_std, exact_sum
from microseg.taxonomy import TRAITS

ACCOUNT_FEATURES = ("log_income", "log_outflow", "slog_balance")
CALENDAR_FEATURES = ("month_sin", "month_cos")


def feature_names(spend_classes: list[str]) -> list[str]:
    return (
        [f"log_spend__{c}" for c in spend_classes]
        + [f"share__{c}" for c in spend_classes]
        + [f"log_count__{c}" for c in spend_classes]
        + list(ACCOUNT_FEATURES)
        + list(CALENDAR_FEATURES)
    )


def parse_month(text: str) -> dt.date:
    """``"2024-12"`` -> 2024-12-01."""
    year, month = map(int, text.split("-"))
    return dt.date(year, month, 1)


def window_months(as_of: dt.date, n: int) -> list[dt.date]:
    """The ``n`` month starts ending at ``as_of``, oldest first."""
    out = []
    year, month = as_of.year, as_of.month
    for _ in range(n):
        out.append(dt.date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return out[::-1]


def _slog(col: Column) -> Column:
    return F.signum(col) * F.log1p(F.abs(col))


def window_grid(spark: SparkSession, references: DataFrame, n: int) -> DataFrame:
    """customer_id, reference_month, t, month: the ``n`` months ending at each customer's
    reference month (t = n - 1 at the reference)."""
    steps = spark.range(n).select(F.col("id").cast("int").alias("t"))
    return references.crossJoin(F.broadcast(steps)).withColumn(
        "month", F.add_months("reference_month", F.col("t") - (n - 1)))


def monthly_features(spark: SparkSession, monthly_spend: DataFrame, monthly_account: DataFrame,
                     personality: DataFrame, spend_classes: list[str], references: DataFrame,
                     window_months: int) -> DataFrame:
    """customer x month of the customer's window (``references``: customer_id,
    reference_month): feature vector, this month's traits and masks."""
    keys = ["customer_id", "month"]
    window = window_grid(spark, references, window_months)
    cells = window.select(*keys)
    account = monthly_account.join(cells, keys, "left_semi")
    grid = window.join(account.select("customer_id").distinct(), "customer_id", "left_semi")

    # silver.monthly_spend holds one row per class bought: spread into two arrays per month
    # (spend and count, in class order, 0 where not bought) by one aggregate each
    cls, zero = F.col("txn_class"), F.lit(0.0)

    def per_class(value: str) -> Column:
        return F.array(*[F.coalesce(F.max(F.when(cls == c, F.col(value))).cast("double"), zero)
                         for c in spend_classes])

    pivot = monthly_spend.join(cells, keys, "left_semi").groupBy(*keys).agg(
        exact_sum(F.col("spend"), CENTS, "spend of silver.monthly_spend").alias("total"),
        per_class("spend").alias("spend"), per_class("n_tx").alias("count"),
    )
    traits = personality.select("customer_id", "month", *TRAITS)
    rows = (
        grid.join(pivot, keys, "left")
        .join(account.select("customer_id", "month", "income", "outflow", "end_balance"), keys, "left")
        .join(traits, keys, "left")
    )
    # array functions, not one expression per feature: the generated code of ~90 expressions
    # is too large for the JVM to compile (> 8,000 bytes), and runs interpreted
    nothing = F.array_repeat(zero, len(spend_classes))
    spend, count = F.coalesce("spend", nothing), F.coalesce("count", nothing)
    angle = (F.month("month") - 1) * F.lit(2 * math.pi / 12)
    active = F.col("income").isNotNull()
    total = F.coalesce(F.col("total"), zero)
    features = F.concat(
        F.transform(spend, F.log1p),
        F.transform(spend, lambda v: F.when(total > 0, v / total).otherwise(zero)),
        F.transform(count, F.log1p),
        F.array(F.log1p(F.coalesce(F.col("income"), zero)), F.log1p(F.coalesce(F.col("outflow"), zero)),
                _slog(F.coalesce(F.col("end_balance"), zero)),
                F.when(active, F.sin(angle)).otherwise(zero), F.when(active, F.cos(angle)).otherwise(zero)),
    )
    return rows.select(
        "customer_id", "reference_month", "t",
        features.cast("array<float>").alias("x"),
        active.cast("float").alias("active"),
        F.when(F.col(TRAITS[0]).isNotNull(), 1.0).otherwise(0.0).cast("float").alias("trait_mask"),
        F.array(*[F.coalesce(F.col(t), zero).cast("float") for t in TRAITS]).alias("y"),
    )


def split_of(customer_id: Column, seed: int, split) -> Column:
    """Deterministic train/validation/test by hashed customer id."""
    u = F.pmod(F.xxhash64(customer_id, F.lit(seed)), F.lit(1_000_000)) / 1_000_000.0
    return (F.when(u < split.train, "train")
            .when(u < split.train + split.validation, "validation")
            .otherwise("test"))


def build_sequences(per_month: DataFrame, cfg: SequencesConfig, seed: int, as_of: dt.date) -> DataFrame:
    """Collect each customer's months, in order, into flat arrays with lengths and flags;
    ``as_of``: the run's month."""
    ordered = F.array_sort(F.collect_list(F.struct("t", "x", "y", "trait_mask", "active")))
    seq = per_month.groupBy("customer_id", "reference_month").agg(ordered.alias("steps"))
    n_active = F.aggregate(F.col("steps.active"), F.lit(0.0), lambda a, x: a + x).cast("int")
    first_active = F.array_position(F.col("steps.active"), F.lit(1.0))
    return seq.select(
        "customer_id",
        F.lit(as_of).alias("as_of"),
        "reference_month",
        F.flatten(F.col("steps.x")).alias("features"),
        F.flatten(F.col("steps.y")).alias("traits"),
        F.col("steps.trait_mask").alias("trait_mask"),
        F.col("steps.active").alias("active"),
        (F.lit(cfg.window_months) - first_active + 1).cast("int").alias("length"),
        n_active.alias("n_active_months"),
        (n_active >= cfg.min_months).alias("eligible"),
        F.when(n_active < cfg.min_months,
               F.concat(F.lit("short_history: "), n_active.cast("string"),
                        F.lit(f" active months < min_months {cfg.min_months}"))).alias("reason"),
        split_of(F.col("customer_id"), seed, cfg.split).alias("split"),
    )


def feature_stats(per_month: DataFrame, sequences: DataFrame, names: list[str]) -> DataFrame:
    """Mean and standard deviation of each feature over active months of training customers
    (``per_month`` holds only months inside each customer's window)."""
    train = sequences.where((F.col("split") == "train") & F.col("eligible")).select("customer_id")
    active = per_month.where(F.col("active") > 0).join(train, "customer_id")
    exploded = active.select(F.posexplode("x").alias("i", "v"), F.xxhash64("customer_id", "t").alias("_h"))
    stats = exact_mean_std(exploded, "i", "v", F.col("_h"))
    spark = per_month.sparkSession
    names_df = spark.createDataFrame(list(enumerate(names)), "i int, feature string")
    return (
        names_df.join(stats, "i", "left")
        .select(F.col("i").alias("index"), "feature",
                F.coalesce("mean", F.lit(0.0)).alias("mean"),
                F.when(F.col("std") > 1e-6, F.col("std")).otherwise(1.0).alias("std"))
    )
