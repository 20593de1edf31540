"""Aggregation, personality, sequences and labels on hand-computed examples; point in time:
nothing after a customer's reference month reaches the model's input, labels come after it."""

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import functions as F

from microseg.config import ConfigError
from microseg.pipeline import Context, run_stage
from microseg.prep import aggregate, personality, sequences
from microseg.prep.ingest import validate
from microseg.prep.stable import CENTS, exact_mean_std, exact_sum
from microseg.taxonomy import TRAITS
from tests.conftest import canonical_rows

JAN, FEB, MAR = dt.date(2024, 1, 1), dt.date(2024, 2, 1), dt.date(2024, 3, 1)
RAW = [
    ("C1", "a1", dt.date(2024, 1, 1), 1000.0, "EUR", "salary", 1500.0),
    ("C1", "a2", dt.date(2024, 1, 3), -10.0, "EUR", "groceries", 1490.0),
    ("C1", "a3", dt.date(2024, 1, 9), -30.0, "EUR", "groceries", 1460.0),
    ("C1", "a4", dt.date(2024, 1, 9), -60.0, "EUR", "pubs_bars", 1400.0),
    ("C1", "a5", dt.date(2024, 2, 2), -50.0, "EUR", "charity", 1350.0),
    ("C2", "b1", dt.date(2024, 3, 4), -20.0, "EUR", "gambling", -20.0),
]


@pytest.fixture
def silver(spark, ctx):
    classes = [c.name for c in ctx.taxonomy.classes]
    tx, _ = validate(canonical_rows(spark, RAW), "t", "b", ctx.cfg.ingest, classes, dt.date(2025, 1, 1))
    kinds = aggregate.class_kinds(spark, ctx.taxonomy)
    spend = aggregate.monthly_spend(tx, kinds)
    account = aggregate.monthly_account(tx)
    pers = personality.spending_personality(spend, personality.coefficients(spark, ctx.taxonomy))
    return spend, account, pers


def test_monthly_spend_per_class(silver):
    spend, _, _ = silver
    rows = {(r.customer_id, r.month, r.txn_class): (r.spend, r.n_tx) for r in spend.collect()}
    assert rows == {
        ("C1", JAN, "groceries"): (40.0, 2), ("C1", JAN, "pubs_bars"): (60.0, 1),
        ("C1", FEB, "charity"): (50.0, 1), ("C2", MAR, "gambling"): (20.0, 1),
    }                                           # the salary credit is income, not spend


def test_monthly_account_totals(silver):
    _, account, _ = silver
    rows = {(r.customer_id, r.month): (r.income, r.outflow, r.end_balance, r.n_tx) for r in account.collect()}
    assert rows[("C1", JAN)] == (1000.0, 100.0, 1400.0, 4)   # last balance: a4 (same day as a3, later id)
    assert rows[("C1", FEB)] == (0.0, 50.0, 1350.0, 1)
    assert rows[("C2", MAR)] == (0.0, 20.0, -20.0, 1)


def test_personality_is_spend_share_weighted_mean(silver, ctx):
    _, _, pers = silver
    coef = {k: np.array(v) for k, v in ctx.taxonomy.coefficients().items()}
    got = {(r.customer_id, r.month): (r.total_spend, np.array([r[t] for t in TRAITS])) for r in pers.collect()}
    expected_jan = 0.4 * coef["groceries"] + 0.6 * coef["pubs_bars"]
    assert got[("C1", JAN)][0] == 100.0
    np.testing.assert_allclose(got[("C1", JAN)][1], expected_jan, atol=1e-12)
    np.testing.assert_allclose(got[("C1", FEB)][1], coef["charity"], atol=1e-12)
    assert len(got) == 3                          # no row for months without spend


def test_personality_does_not_depend_on_row_order(spark, ctx):
    """Float sums in arrival order differ in the last bits between runs; these must not."""
    rng = np.random.default_rng(5)
    classes = ctx.taxonomy.spend_classes
    rows = [(f"C{c}", month, cls, float(np.round(rng.uniform(0.01, 900), 2)), 1)
            for c in range(4) for month in (JAN, FEB, MAR) for cls in classes]
    spend = spark.createDataFrame(rows, "customer_id string, month date, txn_class string, spend double, n_tx int")
    coefs = personality.coefficients(spark, ctx.taxonomy)

    def result(order_seed, parts):
        shuffled = spend.orderBy(F.rand(order_seed)).repartition(parts)
        pers = personality.spending_personality(shuffled, coefs)
        return sorted(tuple(r) for r in pers.collect())

    first = result(1, 5)
    assert len(first) == 12
    assert result(2, 3) == first == result(3, 1)


def test_exact_mean_std_is_right_and_order_free(spark):
    values = np.random.default_rng(1).normal(3.0, 2.0, 5_000)
    df = spark.createDataFrame([(i % 3, float(v)) for i, v in enumerate(values)], "g int, v double")

    def stats(seed, parts):
        shuffled = df.orderBy(F.rand(seed)).repartition(parts).withColumn("h", F.xxhash64("v"))
        return sorted(tuple(r) for r in exact_mean_std(shuffled, "g", "v", F.col("h")).collect())

    got = stats(1, 7)
    assert got == stats(2, 3)                 # the same bits, whatever the order and partitioning
    for g, mean, std in got:                  # values rounded to 9 decimals: 1e-10 of these
        assert (mean, std) == pytest.approx((values[g::3].mean(), values[g::3].std()), rel=1e-9)


def test_exact_mean_std_fails_loudly_on_a_value_or_a_bucket_beyond_a_long(spark):
    huge = spark.createDataFrame([(0, 1.5), (0, 12_345.678)], "g int, v double")
    with pytest.raises(Exception, match="v: a value of 8.49e[+]03 or more has no exact statistics") as err:
        exact_mean_std(huge, "g", "v", F.lit(0)).collect()
    assert "12345" not in str(err.value)
    many = spark.range(200).select("id", F.lit(0).alias("g"), F.lit(8_000.0).alias("v"))   # 200 x 6.4e16 > 2**63
    with pytest.raises(Exception, match="v: too many values in one of 1024 buckets"):
        exact_mean_std(many, "g", "v", F.lit(7)).collect()
    assert exact_mean_std(many, "g", "v", F.col("id")).first().mean == 8_000.0   # spread: fits


def test_exact_sum_is_exact_and_fails_loudly_on_a_value_beyond_its_scale_naming_the_column_only(spark):
    df = spark.createDataFrame([(0.1,), (0.2,), (-0.3,), (None,)], "v double")
    assert df.agg(exact_sum(F.col("v"), CENTS, "v")).first()[0] == 0.0       # doubles would give 5.6e-17
    huge = spark.createDataFrame([(1234567890123.25,)], "v double")
    with pytest.raises(Exception, match="spend of t: a value of 7.21e[+]09 or more cannot be summed exactly at "
                                        "7 decimals") as err:
        huge.agg(exact_sum(F.col("v"), 7, "spend of t")).collect()
    assert not any(digits in str(err.value) for digits in ("1234567890123", "1.234567890123"))


def _sequences(spark, ctx, silver, min_months, reference_months=None):
    """Sequences of the 3-month window up to each customer's reference month (default: MAR)."""
    spend, account, pers = silver
    cfg = ctx.cfg.sequences.model_copy(update={"window_months": 3, "min_months": min_months})
    refs = spark.createDataFrame(list((reference_months or {"C1": MAR, "C2": MAR}).items()),
                                 "customer_id string, reference_month date")
    per_month = sequences.monthly_features(spark, spend, account, pers, ctx.taxonomy.spend_classes, refs, 3)
    seqs = sequences.build_sequences(per_month, cfg, 42, MAR)
    return per_month, {r.customer_id: r for r in seqs.collect()}


def _largest_generated_method(spark, df) -> int:
    """Bytes of the largest method Spark's whole-stage code generation writes for ``df``."""
    adaptive = spark.conf.get("spark.sql.adaptive.enabled")
    spark.conf.set("spark.sql.adaptive.enabled", "false")   # the final plan, before it runs
    try:
        code = spark._jvm.PythonSQLUtils.explainString(df._jdf.queryExecution(), "codegen")
    finally:
        spark.conf.set("spark.sql.adaptive.enabled", adaptive)
    return max(int(n) for n in re.findall(r"maxMethodCodeSize:(\d+)", code))


def test_prep_queries_generate_methods_the_jvm_compiles(spark, ctx, silver):
    """HotSpot does not compile a method of more than 8,000 bytes of bytecode: such a stage
    runs interpreted, row by row (the per-month features did, at 20,724 bytes, until they
    became array functions)."""
    spend, account, pers = silver
    refs = spark.createDataFrame([("C1", MAR), ("C2", MAR)], "customer_id string, reference_month date")
    per_month = sequences.monthly_features(spark, spend, account, pers, ctx.taxonomy.spend_classes, refs, 24)
    queries = {"monthly_spend": spend, "monthly_account": account, "personality": pers,
               "sequences": sequences.build_sequences(per_month, ctx.cfg.sequences, 42, MAR)}
    sizes = {name: _largest_generated_method(spark, df) for name, df in queries.items()}
    assert all(0 < size < 8000 for size in sizes.values()), sizes


def test_window_months():
    assert sequences.window_months(MAR, 3) == [JAN, FEB, MAR]
    assert sequences.window_months(dt.date(2024, 1, 1), 2) == [dt.date(2023, 12, 1), JAN]


def test_sequence_layout_traits_and_masks(spark, ctx, silver):
    _, seqs = _sequences(spark, ctx, silver, min_months=2)
    names = sequences.feature_names(ctx.taxonomy.spend_classes)
    n_f = len(names)
    c1 = seqs["C1"]
    x = np.array(c1.features).reshape(3, n_f)
    y = np.array(c1.traits).reshape(3, 5)
    assert len(c1.features) == 3 * n_f and len(c1.traits) == 15
    i = names.index("log_spend__groceries")
    assert x[0, i] == pytest.approx(np.log1p(40.0))
    assert x[0, names.index("share__pubs_bars")] == pytest.approx(0.6)
    assert x[0, names.index("log_count__groceries")] == pytest.approx(np.log1p(2))
    assert x[0, names.index("log_income")] == pytest.approx(np.log1p(1000.0))
    assert x[1, names.index("slog_balance")] == pytest.approx(np.log1p(1350.0))
    assert not x[2].any()                                   # March: no activity, zeros
    assert list(c1.active) == [1.0, 1.0, 0.0]
    coef = {k: np.array(v) for k, v in ctx.taxonomy.coefficients().items()}
    assert list(c1.trait_mask) == [1.0, 1.0, 0.0]           # each month's own traits
    np.testing.assert_allclose(y[0], 0.4 * coef["groceries"] + 0.6 * coef["pubs_bars"], atol=1e-6)
    np.testing.assert_allclose(y[1], coef["charity"], atol=1e-6)
    assert not y[2].any()
    # C2 is only active in March: left-padded, length 1
    c2 = seqs["C2"]
    assert list(c2.active) == [0.0, 0.0, 1.0] and c2.length == 1
    assert c2.n_active_months == 1 and not c2.eligible
    assert c2.reason == "short_history: 1 active months < min_months 2"
    assert c1.eligible and c1.reason is None and c1.length == 3
    assert c1.as_of == c1.reference_month == MAR


def test_each_window_ends_at_the_customers_reference_month(spark, ctx, silver):
    """C1 read up to January: its window is Nov, Dec, Jan, February's charity is left out;
    C2 (active only in March) has no activity up to its January reference: not in the table."""
    per_month, seqs = _sequences(spark, ctx, silver, min_months=1, reference_months={"C1": JAN, "C2": JAN})
    names = sequences.feature_names(ctx.taxonomy.spend_classes)
    c1 = seqs["C1"]
    x = np.array(c1.features).reshape(3, len(names))
    assert set(seqs) == {"C1"}
    assert (c1.reference_month, c1.as_of) == (JAN, MAR)
    assert list(c1.active) == [0.0, 0.0, 1.0] and c1.length == 1
    assert x[2, names.index("log_income")] == pytest.approx(np.log1p(1000.0))
    assert not x[:, names.index("log_spend__charity")].any()
    assert per_month.count() == 3


def test_split_is_deterministic_by_customer(spark, ctx):
    df = spark.range(2000).select(F.concat(F.lit("C"), F.col("id").cast("string")).alias("customer_id"))
    split = ctx.cfg.sequences.split
    a = df.select("customer_id", sequences.split_of(F.col("customer_id"), 7, split).alias("s"))
    b = df.select("customer_id", sequences.split_of(F.col("customer_id"), 7, split).alias("s"))
    assert a.exceptAll(b).count() == 0
    shares = {r.s: r["count"] / 2000 for r in a.groupBy("s").count().collect()}
    assert shares["train"] == pytest.approx(0.7, abs=0.04)
    assert shares["validation"] == pytest.approx(0.15, abs=0.03)


def test_feature_stats_use_training_customers_only(spark, ctx, silver):
    per_month, _ = _sequences(spark, ctx, silver, min_months=1)
    seqs_df = spark.createDataFrame([("C1", "train", True), ("C2", "test", True)],
                                    "customer_id string, split string, eligible boolean")
    names = sequences.feature_names(ctx.taxonomy.spend_classes)
    stats = {r.feature: r for r in sequences.feature_stats(per_month, seqs_df, names).collect()}
    assert len(stats) == len(names)
    inc = stats["log_income"]            # C1's active months: Jan (1000) and Feb (0)
    assert inc.mean == pytest.approx(np.log1p(1000.0) / 2)
    assert inc.std == pytest.approx(np.log1p(1000.0) / 2)
    assert stats["log_spend__gambling"].std == 1.0   # constant in training -> std 1, not 0


APR, MAY, JUN = dt.date(2024, 4, 1), dt.date(2024, 5, 1), dt.date(2024, 6, 1)
# L: groceries up to its loan (March), then huge gambling; N: no loan, groceries throughout;
# S: loan in May (one month observed after it); F: loan after the data ends (August).
LOANS = [("L", "B", "2024-03-15"), ("S", "A", "2024-05-03"), ("F", "D", "2024-08-20")]


def _point_in_time_rows():
    rows = []
    for customer in ("L", "N", "S", "F"):
        balance = 1000.0
        for m in (JAN, FEB, MAR, APR, MAY, JUN):
            late = customer == "L" and m > MAR
            for day, amount, cls in ((1, 2000.0, "salary"),
                                     (5, -50_000.0 if late else -100.0, "gambling" if late else "groceries")):
                balance += amount
                rows.append((customer, f"{customer}{m:%m}{day}", m.replace(day=day), amount, "EUR", cls, balance))
    return rows


@pytest.fixture
def point_in_time(spark, ctx):
    """Silver and personality tables of ``_point_in_time_rows`` and the ``LOANS`` book in the
    lakehouse; a 3-month window and horizon, (nearly) everyone in training."""
    cfg = ctx.cfg.with_overrides(**{
        "sequences.window_months": 3, "sequences.min_months": 1, "sequences.reference": "loan_date",
        "sequences.split": {"train": 0.999, "validation": 0.0005, "test": 0.0005},
        "labels.horizon_months": 3})
    ctx = Context(cfg, spark, ctx.tables, ctx.taxonomy)
    classes = [c.name for c in ctx.taxonomy.classes]
    tx, _ = validate(canonical_rows(spark, _point_in_time_rows()), "t", "b", cfg.ingest, classes,
                     dt.date(2025, 1, 1))
    spend = aggregate.monthly_spend(tx, aggregate.class_kinds(spark, ctx.taxonomy))
    ctx.tables.overwrite("monthly_spend", spend)
    ctx.tables.overwrite("monthly_account", aggregate.monthly_account(tx))
    ctx.tables.overwrite("personality", personality.spending_personality(
        ctx.tables.read("monthly_spend"), personality.coefficients(spark, ctx.taxonomy)))
    book = Path(cfg.data_path(cfg.source.loans))
    book.mkdir(parents=True)
    (book / "loans.csv").write_text("customer_id,loan_id,loan_status,loan_date\n" + "".join(
        f"{c},L{c},{status},{date}\n" for c, status, date in LOANS))
    return ctx


def test_nothing_after_the_reference_month_enters_features_traits_or_scaling(point_in_time):
    ctx = point_in_time
    out = run_stage("sequences", ctx)
    seqs = {r.customer_id: r for r in ctx.tables.read("sequences").collect()}
    assert out["customers_before_as_of"] == 2 and out["customers_at_as_of"] == 2
    assert {c: (r.reference_month, r.as_of) for c, r in seqs.items()} == {
        "L": (MAR, JUN), "S": (MAY, JUN), "N": (JUN, JUN), "F": (JUN, JUN)}
    assert all(r.split == "train" and r.eligible for r in seqs.values())
    names = sequences.feature_names(ctx.taxonomy.spend_classes)
    x = np.array(seqs["L"].features).reshape(3, len(names))
    assert not x[:, names.index("log_spend__gambling")].any()
    assert x[:, names.index("log_outflow")] == pytest.approx([np.log1p(100.0)] * 3)
    assert x[:, names.index("slog_balance")] == pytest.approx(np.log1p([2900.0, 4800.0, 6700.0]))
    groceries = np.array(ctx.taxonomy.coefficients()["groceries"])
    assert list(seqs["L"].trait_mask) == [1.0, 1.0, 1.0]
    np.testing.assert_allclose(np.array(seqs["L"].traits).reshape(3, 5), [groceries] * 3, atol=1e-6)
    stats = {r.feature: r for r in ctx.tables.read("feature_stats").collect()}
    assert (stats["log_spend__gambling"].mean, stats["log_spend__gambling"].std) == (0.0, 1.0)
    assert stats["log_outflow"].mean == pytest.approx(np.log1p(100.0))   # 12 months, all 100


def test_liquidity_and_default_are_observed_after_the_reference_month(point_in_time):
    ctx = point_in_time
    out = run_stage("labels", ctx)
    labels = {r.customer_id: r for r in ctx.tables.read("labels").collect()}
    # L: April..June only: end balances -41,300, -89,300, -137,300; outflow 50,000 a month
    assert labels["L"].reference_month == MAR and labels["L"].months_observed == 3
    assert labels["L"].liquidity_index == pytest.approx(-89_300 / 50_000)
    assert labels["L"].loan_default == 1
    assert (labels["S"].months_observed, labels["S"].liquidity_index, labels["S"].loan_default) == (1, None, 0)
    for later in ("N", "F"):               # read at June: nothing observed after it, no loan by then
        assert labels[later].reference_month == JUN and labels[later].months_observed == 0
        assert labels[later].liquidity_index is None and labels[later].loan_default is None
    assert (out["customers"], out["liquidity_labelled"], out["default_labelled"]) == (4, 1, 2)
    assert out["by_reference_month"] == {"2024-03-01": [1, 1, 1], "2024-05-01": [1, 0, 1],
                                         "2024-06-01": [2, 0, 0]}
    run_stage("sequences", ctx)            # the two stages agree customer by customer
    refs = ctx.tables.read("sequences").select("customer_id", "reference_month")
    assert refs.exceptAll(ctx.tables.read("labels").select("customer_id", "reference_month")).count() == 0


def test_loan_date_reference_needs_dated_loans(point_in_time):
    ctx = point_in_time
    book = Path(ctx.cfg.data_path(ctx.cfg.source.loans)) / "loans.csv"
    book.write_text("customer_id,loan_id,loan_status\nL,LL,B\n")
    with pytest.raises(ConfigError, match="sequences.reference: loan_date"):
        run_stage("sequences", ctx)
    as_of = ctx.cfg.with_overrides(**{"sequences.reference": "as_of"})
    run_stage("labels", Context(as_of, ctx.spark, ctx.tables, ctx.taxonomy))
    labels = {r.customer_id: r for r in ctx.tables.read("labels").collect()}
    assert labels["L"].reference_month == JUN and labels["L"].loan_default == 1   # undated: counts at as_of


def test_window_traits_average_each_customers_own_months_with_a_personality(spark):
    rows = [("A", [1.0] * 5 + [3.0] * 5 + [100.0] * 5, [1.0, 1.0, 0.0]), ("B", [0.0] * 15, [0.0, 0.0, 0.0])]
    seqs = spark.createDataFrame(rows, "customer_id string, traits array<float>, trait_mask array<float>")
    got = {r.customer_id: list(r.embedding) for r in personality.window_traits(seqs).collect()}
    assert got == {"A": [2.0] * 5, "B": [0.0] * 5}       # the masked month (100) does not count
