"""The product's central claim, guarded: on a small planted bank, built through the real
stages (generate, ingest, aggregate, personality, sequences: Spark and Delta), the default
encoder's hidden states recover the planted micro-segments better than static class
shares, flattened monthly shares and hand-made temporal features of the class shares and of
the class count shares, each by a margin, and keep the coarse groups.

Seeded; the encoder trains in memory on the training split with the configured objective
and size (the same loop the report's objective comparison uses).
"""

import numpy as np
import pytest

from microseg import pipeline
from microseg.config import load_config
from microseg.evaluate import encoders, references
from microseg.stages.context import encoder_spec, feature_scaling

MARGIN = 0.05


@pytest.fixture(scope="module")
def planted(spark, tmp_path_factory):
    cfg = load_config("local", overrides={
        "tables.root": str(tmp_path_factory.mktemp("claims") / "lakehouse"), "spark.shuffle_partitions": 4,
        "generator.customers": 480, "generator.coarse_groups": 3, "generator.micro_per_group": 4,
        "generator.partitions": 2, "sequences.reference": "as_of"})
    ctx = pipeline.Context.create(cfg, spark)
    for stage in ("generate", "ingest", "aggregate", "personality", "sequences"):
        pipeline.run_stage(stage, ctx)
    rows = (ctx.tables.read("sequences").where("eligible")
            .join(ctx.tables.read("ground_truth").select("customer_id", "coarse_group", "micro_segment"), "customer_id")
            .select("customer_id", "split", "coarse_group", "micro_segment", "features", "traits", "trait_mask")
            .orderBy("customer_id").toPandas())
    months = cfg.sequences.window_months
    x = np.stack(rows["features"]).reshape(len(rows), months, -1).astype(np.float32)
    traits = np.stack(rows["traits"]).reshape(len(rows), months, -1).astype(np.float32)
    mask = np.stack(rows["trait_mask"]).astype(np.float32)
    scaling = feature_scaling(ctx, ctx.tables.version("sequences"))
    return cfg, rows, x, traits, mask, scaling


def test_the_default_encoder_beats_static_and_flattened_shares_on_micro_segments(planted):
    cfg, rows, x, traits, mask, scaling = planted
    m = cfg.model
    frame, _ = encoders.compare(rows, x, traits, mask, scaling, encoder_spec(m, x.shape[2], x.shape[1]),
                                [m.objective], m.epochs, m.batch_size, m.learning_rate, [cfg.seed],
                                lr_step_epochs=m.lr_step_epochs, lr_gamma=m.lr_gamma)
    ari = encoders.summary(frame).set_index(["variant", "measure"])["mean"]
    learned = ari[(m.objective, "ari_micro")]
    static, flat = ari[(references.NAMES[0], "ari_micro")], ari[(references.NAMES[1], "ari_micro")]
    hand, counted = ari[(references.NAMES[2], "ari_micro")], ari[(references.NAMES[3], "ari_micro")]
    weighted = ari[(references.NAMES[4], "ari_micro")]          # reported, not claimed (see the README)
    print(f"ARI micro: {m.objective} {learned:.3f}, static {static:.3f}, flattened {flat:.3f}, "
          f"hand-made {hand:.3f}, on count shares {counted:.3f}, reliability-weighted {weighted:.3f}; "
          f"coarse {ari[(m.objective, 'ari_coarse')]:.3f}")
    assert learned > max(static, flat) + MARGIN
    assert learned > max(hand, counted) + MARGIN
    assert ari[(m.objective, "ari_coarse")] >= 0.9


def test_the_planted_set_is_what_the_claim_needs(planted):
    _, rows, x, _, _, _ = planted
    assert rows["micro_segment"].nunique() == 12 and rows["coarse_group"].nunique() == 3
    assert len(rows) > 400 and x.shape[1] == 24
