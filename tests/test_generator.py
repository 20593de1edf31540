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
