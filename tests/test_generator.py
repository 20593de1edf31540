from pyspark.sql import functions as F

from microseg.sources.generator import RAW_SCHEMA, TRUTH_SCHEMA, generate, mix_weights


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


def test_mix_weights_keep_window_totals_alike():
    import numpy as np

    rng = np.random.default_rng(0)
    for dynamics in ("steady", "drifting", "seasonal"):
        w = mix_weights(dynamics, 24, rng)
        assert w.min() >= 0 and w.max() <= 1
        assert abs(w.mean() - 0.5) < 0.05, dynamics
    assert np.ptp(mix_weights("steady", 24, rng)) == 0
    assert np.ptp(mix_weights("drifting", 24, rng)) == 1


def test_loan_book_status_follows_the_latent_default(spark, cfg, ctx):
    from microseg.sources.generator import loan_book

    _, truth = generate(spark, cfg.generator, cfg.seed, ctx.taxonomy)
    loans = loan_book(truth, cfg.seed).join(truth, "customer_id").toPandas()
    assert 0.4 < len(loans) / cfg.generator.customers < 0.8
    assert set(loans.loc[loans.loan_default == 1, "loan_status"]) <= {"B", "D"}
    assert set(loans.loc[loans.loan_default == 0, "loan_status"]) <= {"A", "C"}


def test_injected_bad_rows_come_back_as_their_reasons(spark, cfg):
    from microseg import pipeline
    from microseg.sources.generator import INJECTABLE

    rates = {reason: 0.01 for reason in INJECTABLE}
    run_cfg = cfg.with_overrides(**{"generator.bad_rows": rates, "ingest.today": "2030-01-01"})
    ctx = pipeline.Context.create(run_cfg, spark)
    pipeline.run_stage("generate", ctx)
    out = pipeline.run_stage("ingest", ctx)
    assert set(out["quarantine_reasons"]) == set(INJECTABLE)          # every kind shows up
    assert out["rows_read"] == out["rows_valid"] + out["rows_quarantined"]
    assert out["rows_inserted"] == out["rows_valid"]
    # ~1% each of ~25k rows, fewer where an earlier rule claims a row first
    assert all(n > 50 for n in out["quarantine_reasons"].values())
