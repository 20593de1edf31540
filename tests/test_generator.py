import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from microseg.sources.generator import (
    DYNAMICS,
    LOAN_MARGIN,
    RAW_SCHEMA,
    TRUTH_SCHEMA,
    customer_mix,
    customer_transactions,
    generate,
    latent_state,
    loan_book,
    make_bank,
    micro_plans,
    mix_weights,
    monthly_mix,
)
from microseg.taxonomy import load_taxonomy


def test_generator_is_deterministic_and_partition_independent(spark, cfg, ctx):
    tx1, truth1 = generate(spark, cfg.generator, cfg.seed, ctx.taxonomy)
    other = cfg.generator.model_copy(update={"partitions": 5})
    tx2, truth2 = generate(spark, other, cfg.seed, ctx.taxonomy)
    assert tx1.schema == RAW_SCHEMA and truth1.schema == TRUTH_SCHEMA
    assert tx1.exceptAll(tx2).count() == 0 and tx2.exceptAll(tx1).count() == 0
    assert truth1.exceptAll(truth2).count() == 0


def test_generator_output_is_plausible(spark, cfg, ctx):
    tx, truth = generate(spark, cfg.generator, cfg.seed, ctx.taxonomy)
    stats = tx.agg(
        F.countDistinct("customer_id").alias("customers"),
        F.countDistinct("txn_id").alias("ids"), F.count("*").alias("rows"),
        F.min("booking_date").alias("first"), F.max("booking_date").alias("last"),
        F.sum(F.when(F.col("category") == "salary", 1).otherwise(0)).alias("salaries"),
        F.sum(F.when((F.col("category") != "salary") & (F.col("amount") >= 0), 1).otherwise(0)).alias("pos_spend"),
    ).head()
    assert stats.customers == cfg.generator.customers
    assert stats.ids == stats.rows                      # transaction ids are unique
    assert str(stats.first) >= "2023-01-01" and str(stats.last) < "2024-01-01"  # 12 months
    assert stats.salaries > 0 and stats.pos_spend == 0  # spend is negative, salary positive
    t = truth.toPandas()
    assert set(t["coarse_group"]) <= set(range(cfg.generator.coarse_groups))
    assert t["micro_segment"].max() < cfg.generator.coarse_groups * cfg.generator.micro_per_group
    assert (t["first_month"] > 0).any()                 # some short histories
    assert set(t["loan_default"]) <= {0, 1}


def test_mix_weights_average_out_over_the_window():
    calendar = np.arange(24) % 12
    plans = {d: p for p, d in ((p, p.dynamics) for row in micro_plans(np.full((1, 6), 1 / 6), 4, 0) for p in row)}
    for dynamics, plan in plans.items():
        w = mix_weights(plan, calendar, switch=12)
        assert w.min() >= -1 and w.max() <= 1 and abs(w.mean()) < 1e-9, dynamics
    assert not mix_weights(plans["steady"], calendar, 12).any()
    assert list(mix_weights(plans["drifting"], calendar, 12)[[0, -1]]) == [-1, 1]
    assert list(mix_weights(plans["regime"], calendar, 5)[4:6]) == [-1, 1]
    seasonal = mix_weights(plans["seasonal"], calendar, 12)
    assert np.allclose(seasonal[:6], seasonal[6:12])   # a 6-month period on the calendar


def test_micro_plans_are_fixed_valid_and_distinct():
    base = np.random.default_rng(1).dirichlet(np.full(20, 0.35), size=3)
    plans = micro_plans(base, 12, seed=5)
    assert micro_plans(base, 6, seed=5) == [row[:6] for row in plans]   # more micros add, not change
    for mix, row in zip(base, plans):
        large = set(np.argsort(-mix)[:4])
        assert [p.dynamics for p in row[:4]] == list(DYNAMICS) and row[0].amplitude == 0
        for dynamics in DYNAMICS[1:]:
            moving = [p for p in row if p.dynamics == dynamics]
            assert len({frozenset((p.a, p.b)) for p in moving}) == len(moving)   # distinct pairs
            for p in moving:
                assert {p.a, p.b} <= large and p.amplitude == pytest.approx(0.8 * min(mix[p.a], mix[p.b]))
                mixes = monthly_mix(mix, p, mix_weights(p, np.arange(24) % 12, 10))
                assert np.allclose(mixes.sum(axis=1), 1) and mixes.min() >= 0


def test_micro_segments_share_the_group_mix_but_not_its_movement(cfg):
    gen = cfg.generator.model_copy(update={"customers": 300, "months": 24})
    bank = make_bank(gen, cfg.seed, load_taxonomy("conf/taxonomy.yaml"))
    states = [s for s in (latent_state(i, gen, cfg.seed) for i in range(gen.customers)) if s["first_month"] == 0]
    shares = {s["customer_id"]: _count_shares(customer_transactions(0, s, gen, cfg.seed, bank), bank) for s in states}
    by_micro = {}
    for s in states:
        by_micro.setdefault(s["micro_segment"], []).append(s)
    window = {m: np.mean([shares[s["customer_id"]].mean(axis=0) for s in ss], axis=0) for m, ss in by_micro.items()}
    group_of = {m: ss[0]["coarse_group"] for m, ss in by_micro.items()}
    within = [np.abs(window[m] - window[n]).sum() for m in window for n in window if m < n and group_of[m] == group_of[n]]
    across = [np.abs(window[m] - window[n]).sum() for m in window for n in window if group_of[m] != group_of[n]]
    assert max(within) < 0.2 < 0.5 < min(across)       # static shares tell groups apart, not micros
    for micro, ss in by_micro.items():
        plan = bank.plans[ss[0]["coarse_group"]][ss[0]["_micro"]]
        if plan.dynamics == "steady":
            continue
        if plan.dynamics != "regime":                   # one trajectory per micro-segment
            assert all(np.array_equal(customer_mix(s, bank), customer_mix(ss[0], bank)) for s in ss)
        if plan.dynamics == "drifting":                 # every customer's class a gains on class b
            slopes = [np.polyfit(np.arange(24), shares[s["customer_id"]][:, plan.a]
                                 - shares[s["customer_id"]][:, plan.b], 1)[0] for s in ss]
            assert min(slopes) > 0, micro


def _count_shares(tx: pd.DataFrame, bank) -> np.ndarray:
    """Months x spend classes: each month's share of card transactions per class."""
    card = tx[tx["amount"] < 0]
    month = pd.to_datetime(card["booking_date"]).dt.to_period("M")
    counts = pd.crosstab(month, card["category"]).reindex(columns=bank.spend_classes, fill_value=0).to_numpy()
    return counts / counts.sum(axis=1, keepdims=True)


def test_every_micro_segment_and_dynamics_is_planted_with_a_loan_window(spark, cfg, ctx):
    gen = cfg.generator.model_copy(update={"customers": 300, "months": 24})
    _, truth = generate(spark, gen, cfg.seed, ctx.taxonomy)
    t = truth.toPandas()
    assert sorted(set(t["micro_segment"])) == list(range(gen.coarse_groups * gen.micro_per_group))
    assert set(t["dynamics"]) == set(DYNAMICS)
    granted = t.dropna(subset=["loan_date"])
    month = pd.to_datetime(granted["loan_date"]).dt.to_period("M") - pd.Period(gen.start_month, "M")
    month = month.map(lambda offset: offset.n)
    assert (pd.to_datetime(granted["loan_date"]).dt.day == 1).all()
    assert (month - granted["first_month"] >= LOAN_MARGIN).all() and (month <= gen.months - 1 - LOAN_MARGIN).all()
    assert month.nunique() > 5 and len(granted) > 0.8 * len(t)   # spread, and most customers qualify
    short = t[t["first_month"] > gen.months - 1 - 2 * LOAN_MARGIN]
    assert len(short) > 0 and short["loan_date"].isna().all()
    book = loan_book(truth, cfg.seed).toPandas()
    assert book["loan_date"].str.fullmatch(r"\d{4}-\d{2}-01").all()
    assert set(book["customer_id"]) <= set(granted["customer_id"])


def test_loan_book_status_follows_the_latent_default(spark, cfg, ctx):
    gen = cfg.generator.model_copy(update={"months": 24})   # room for 6 months before and after
    _, truth = generate(spark, gen, cfg.seed, ctx.taxonomy)
    loans = loan_book(truth, cfg.seed).join(truth.drop("loan_date"), "customer_id").toPandas()
    assert 0.4 < len(loans) / gen.customers < 0.8
    assert set(loans.loc[loans.loan_default == 1, "loan_status"]) <= {"B", "D"}
    assert set(loans.loc[loans.loan_default == 0, "loan_status"]) <= {"A", "C"}


def test_injected_bad_rows_come_back_as_their_reasons(spark, cfg):
    from microseg import pipeline
    from microseg.config import INJECTABLE_REASONS
    from microseg.sources.generator import INJECTABLE

    rates = {reason: 0.01 for reason in INJECTABLE}
    run_cfg = cfg.with_overrides(**{"generator.bad_rows": rates, "ingest.today": "2030-01-01"})
    ctx = pipeline.Context.create(run_cfg, spark)
    pipeline.run_stage("generate", ctx)
    out = pipeline.run_stage("ingest", ctx)
    assert set(out["quarantine_reasons"]) == set(INJECTABLE)          # every kind shows up
    assert set(INJECTABLE) == set(INJECTABLE_REASONS)                 # the config accepts each, no more
    assert out["rows_read"] == out["rows_valid"] + out["rows_quarantined"]
    assert out["rows_inserted"] == out["rows_valid"]
    # ~1% each of ~25k rows, fewer where an earlier rule claims a row first
    assert all(n > 50 for n in out["quarantine_reasons"].values())


def test_generate_refuses_a_real_source_and_writes_nothing(spark, cfg):
    from pathlib import Path

    from microseg import pipeline
    from microseg.config import ConfigError

    real = cfg.with_overrides(**{"source.adapter": "files"})   # the same landing, read as a bank's files
    ctx = pipeline.Context.create(real, spark)
    with pytest.raises(ConfigError, match="source.adapter is 'files'.*source.adapter: generator"):
        pipeline.run_stage("generate", ctx)
    assert not ctx.tables.exists("ground_truth")
    assert not Path(real.data_path(real.generator.landing)).exists()
