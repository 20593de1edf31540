"""Aggregation, personality and sequences on hand-computed examples."""

import datetime as dt

import numpy as np
import pytest
from pyspark.sql import functions as F

from microseg.evaluate import frames, targets
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


def test_personality_and_window_traits_do_not_depend_on_row_order(spark, ctx):
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
        window = personality.window_traits(pers.orderBy(F.rand(order_seed)).repartition(parts), [JAN, FEB, MAR])
        return (sorted(tuple(r) for r in pers.collect()), sorted((r.customer_id, tuple(r.embedding))
                                                               for r in window.collect()))

    first = result(1, 5)
    assert len(first[0]) == 12 and len(first[1]) == 4
    assert result(2, 3) == first == result(3, 1)


def test_exact_mean_std_is_right_and_order_free(spark):
    values = np.random.default_rng(1).normal(3.0, 2.0, 5_000)
    df = spark.createDataFrame([(float(v),) for v in values], "v double")
    mean, std = exact_mean_std(F.col("v"))
    got = [tuple(df.orderBy(F.rand(seed)).repartition(parts).agg(mean, std).first())
           for seed, parts in ((1, 7), (2, 3))]
    assert got[0] == got[1]
    assert got[0] == pytest.approx((values.mean(), values.std()), rel=1e-12)


def test_exact_sum_is_exact_and_fails_loudly_on_a_value_beyond_its_scale(spark):
    df = spark.createDataFrame([(0.1,), (0.2,), (-0.3,), (None,)], "v double")
    assert df.agg(exact_sum(F.col("v"), CENTS)).first()[0] == 0.0       # doubles would give 5.6e-17
    huge = spark.createDataFrame([(1e12,)], "v double")
    with pytest.raises(Exception, match="too large for an exact sum at 7 decimals"):
        huge.agg(exact_sum(F.col("v"), 7)).collect()


def _sequences(spark, ctx, silver, target, min_months):
    spend, account, pers = silver
    cfg = ctx.cfg.sequences.model_copy(update={"window_months": 3, "min_months": min_months, "target": target})
    months = sequences.window_months(MAR, 3)
    per_month = sequences.monthly_features(spark, spend, account, pers, ctx.taxonomy.spend_classes,
                                           months, target)
    seqs = sequences.build_sequences(per_month, cfg, 42, MAR)
    return per_month, {r.customer_id: r for r in seqs.collect()}


def test_window_months():
    assert sequences.window_months(MAR, 3) == [JAN, FEB, MAR]
    assert sequences.window_months(dt.date(2024, 1, 1), 2) == [dt.date(2023, 12, 1), JAN]


@pytest.mark.parametrize("target", ["next", "current"])
def test_sequence_layout_targets_and_masks(spark, ctx, silver, target):
    _, seqs = _sequences(spark, ctx, silver, target, min_months=2)
    names = sequences.feature_names(ctx.taxonomy.spend_classes)
    n_f = len(names)
    c1 = seqs["C1"]
    x = np.array(c1.features).reshape(3, n_f)
    y = np.array(c1.targets).reshape(3, 5)
    assert len(c1.features) == 3 * n_f and len(c1.targets) == 15
    i = names.index("log_spend__groceries")
    assert x[0, i] == pytest.approx(np.log1p(40.0))
    assert x[0, names.index("share__pubs_bars")] == pytest.approx(0.6)
    assert x[0, names.index("log_count__groceries")] == pytest.approx(np.log1p(2))
    assert x[0, names.index("log_income")] == pytest.approx(np.log1p(1000.0))
    assert x[1, names.index("slog_balance")] == pytest.approx(np.log1p(1350.0))
    assert not x[2].any()                                   # March: no activity, zeros
    assert list(c1.active) == [1.0, 1.0, 0.0]
    charity = np.array(ctx.taxonomy.coefficients()["charity"])
    if target == "next":                                    # Jan -> Feb's traits
        assert list(c1.target_mask) == [1.0, 0.0, 0.0]
        np.testing.assert_allclose(y[0], charity, atol=1e-6)
    else:
        assert list(c1.target_mask) == [1.0, 1.0, 0.0]
        np.testing.assert_allclose(y[1], charity, atol=1e-6)
    # C2 is only active in March: left-padded, length 1
    c2 = seqs["C2"]
    assert list(c2.active) == [0.0, 0.0, 1.0] and c2.length == 1
    assert c2.n_active_months == 1 and not c2.eligible
    assert c2.reason == "short_history: 1 active months < min_months 2"
    assert c1.eligible and c1.reason is None and c1.length == 3 and c1.as_of == MAR


def test_split_is_deterministic_by_customer(spark, ctx):
    df = spark.range(2000).select(F.concat(F.lit("C"), F.col("id").cast("string")).alias("customer_id"))
    split = ctx.cfg.sequences.split
    a = df.select("customer_id", sequences.split_of(F.col("customer_id"), 7, split).alias("s"))
    b = df.select("customer_id", sequences.split_of(F.col("customer_id"), 7, split).alias("s"))
    assert a.exceptAll(b).count() == 0
    shares = {r.s: r["count"] / 2000 for r in a.groupBy("s").count().collect()}
    assert shares["train"] == pytest.approx(0.7, abs=0.04)
    assert shares["validation"] == pytest.approx(0.15, abs=0.03)


@pytest.mark.parametrize("target", ["next", "current"])
def test_evaluation_targets_match_the_sequences_table(spark, ctx, silver, target):
    """The target comparison rebuilds both targets from the personality table; the
    configured one must equal what the sequences stage wrote."""
    _, _, pers = silver
    _, seqs = _sequences(spark, ctx, silver, target, min_months=1)
    cells = frames.trait_months(pers, sequences.window_months(MAR, 3)).orderBy("customer_id").toPandas()
    y, mask = targets.shifted(*targets.monthly_targets(cells["trait_months"], 3), target)
    for i, customer in enumerate(cells["customer_id"]):
        assert mask[i].tolist() == list(seqs[customer].target_mask)
        np.testing.assert_allclose(y[i].ravel(), seqs[customer].targets, atol=1e-6)


def test_feature_stats_use_training_customers_only(spark, ctx, silver):
    per_month, _ = _sequences(spark, ctx, silver, "current", min_months=1)
    seqs_df = spark.createDataFrame([("C1", "train", True), ("C2", "test", True)],
                                    "customer_id string, split string, eligible boolean")
    names = sequences.feature_names(ctx.taxonomy.spend_classes)
    stats = {r.feature: r for r in sequences.feature_stats(per_month, seqs_df, names).collect()}
    assert len(stats) == len(names)
    inc = stats["log_income"]            # C1's active months: Jan (1000) and Feb (0)
    assert inc.mean == pytest.approx(np.log1p(1000.0) / 2)
    assert inc.std == pytest.approx(np.log1p(1000.0) / 2)
    assert stats["log_spend__gambling"].std == 1.0   # constant in training -> std 1, not 0
