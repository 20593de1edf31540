"""Degenerate inputs say what they are instead of training or crashing: spend in one class
or a constant personality stops training before anything is registered, an unusable
validation loss is never promoted, statements can class bills by a category column, and
too few distinct vectors give one segment with the reason."""

import math

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from microseg import tracking
from microseg.config import ConfigError, SegmentConfig, load_config
from microseg.pipeline import Context, run_stage
from microseg.prep import learnable
from microseg.score import segment
from microseg.sources import statements
from microseg.stages.context import feature_scaling, sequences_record
from microseg.stages.model import require_learnable

HEADER = "account,period,closing_balance,payments_in,bills_paid"
KINDS = {"ELEC": "utilities", "RENT": "mortgage_rent", "FOOD": "groceries", "FUN": "entertainment"}


# --- the check, pure ------------------------------------------------------------------------

def test_spend_in_one_class_or_none_is_refused_naming_the_class_and_the_mapping_key():
    with pytest.raises(learnable.NothingToLearn, match=r"falls in 1 class \(utilities\).*`columns.category`"):
        learnable.check(["utilities"], None, "statements")
    with pytest.raises(learnable.NothingToLearn, match=r"falls in no class.*`category_codes`"):
        learnable.check([], [0.1] * 5, "files")


def test_a_constant_personality_is_refused_only_when_the_objective_predicts_traits():
    with pytest.raises(learnable.NothingToLearn, match=r"does not vary.*openness 0, .*groceries, utilities"):
        learnable.check(["groceries", "utilities"], [0.0] * 5, "statements")
    with pytest.raises(learnable.NothingToLearn, match="does not vary"):
        learnable.check(["groceries", "utilities"], [1e-9] * 5, "berka")
    learnable.check(["groceries", "utilities"], [0.0, 0.0, 0.02, 0.0, 0.0], "statements")
    learnable.check(["groceries", "utilities"], None, "statements")   # objective without trait parts
    assert learnable.uses_traits({"traits@1": 1.0}) and learnable.uses_traits({"shape": 1.0, "window_traits": 0.5})
    assert not learnable.uses_traits({"shape": 1.0, "account": 0.3})


def test_classes_with_spend_read_the_fitted_feature_means():
    names = ["log_spend__a", "log_spend__b", "log_spend__c", "share__a", "share__b", "share__c", "log_income"]
    assert learnable.classes_with_spend(names, [0.0, 2.5, 0.1, 0.3, 0.0, 0.0, 7.0]) == ["b", "c"]


def test_trait_variance_counts_months_with_a_personality_only(spark):
    masked_out = [9.0] * 5                              # a month without personality: ignored
    rows = [("a", [0.1, 0.2, 0.3, 0.4, 0.5] + masked_out, [1.0, 0.0]),
            ("b", [0.3, 0.2, 0.3, 0.4, 0.5] + [0.3, 0.2, 0.3, 0.4, 0.9], [1.0, 1.0])]
    df = spark.createDataFrame(rows, "customer_id string, traits array<float>, trait_mask array<float>")
    got = learnable.trait_variance(df)
    want = np.var([[0.1, 0.2, 0.3, 0.4, 0.5], [0.3, 0.2, 0.3, 0.4, 0.5], [0.3, 0.2, 0.3, 0.4, 0.9]], axis=0)
    np.testing.assert_allclose(got, want, atol=1e-7)


# --- statements through the real stages ---------------------------------------------------

def _statements(folder, category: bool):
    """30 accounts x 8 months; with ``category`` a bill_type column cycling over KINDS and
    one row of an unmapped type."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [HEADER + (",bill_type" if category else "")]
    kinds = list(KINDS)
    for c in range(30):
        for m in range(1, 9):
            row = f"A{c:02d},2024-{m:02d},{1000 + 37 * c - 11 * m},{1500 + 13 * c + 7 * m},{200 + 29 * c + 17 * m}"
            lines.append(row + (f",{kinds[(c + m) % 4]}" if category else ""))
    if category:
        lines.append("A00,2023-12,1000,1500,99,LOTTERY")
    (folder / "s.csv").write_text("\n".join(lines) + "\n")


def _prepared(tmp_path_factory, category: bool) -> Context:
    root = tmp_path_factory.mktemp("statements")
    _statements(root / "landing", category)
    overrides = {"source.adapter": "statements", "source.path": str(root / "landing"),
                 "source.mapping": "conf/sources/statements.yaml", "source.loans": None,
                 "ingest.today": "2025-01-01", "tables.root": str(root / "lakehouse"),
                 "spark.shuffle_partitions": 4, "sequences.window_months": 12, "sequences.min_months": 4,
                 "sequences.reference": "as_of",
                 "model.hidden": 8, "model.epochs": 1, "model.batch_size": 32}
    if category:
        mapping = yaml.safe_load(open("conf/sources/statements.yaml"))
        mapping["columns"]["category"] = "bill_type"
        mapping["categories"] = KINDS
        (root / "statements.yaml").write_text(yaml.safe_dump(mapping))
        overrides["source.mapping"] = str(root / "statements.yaml")
    return load_config("local", overrides=overrides)


@pytest.fixture(scope="module")
def one_class(spark, tmp_path_factory):
    """Statements whose bills all go to one class (``bills_class``), prepared up to gold.sequences."""
    ctx = Context.create(_prepared(tmp_path_factory, category=False), spark)
    for stage in ("ingest", "aggregate", "personality", "sequences"):
        run_stage(stage, ctx)
    return ctx


def test_statements_with_a_category_column_give_bills_in_several_classes_and_something_to_learn(
        spark, tmp_path_factory):
    ctx = Context.create(_prepared(tmp_path_factory, category=True), spark)
    out = run_stage("ingest", ctx)
    assert out["rows_read"] == 2 * (30 * 8 + 1)                 # two legs per statement row, always
    assert out["quarantine_reasons"] == {"UNKNOWN_CATEGORY": 1}  # the LOTTERY row's bills
    bills = {r.txn_class: r["count"] for r in ctx.tables.read("transactions").where("amount < 0")
             .groupBy("txn_class").count().collect()}
    assert bills == {c: 60 for c in KINDS.values()}
    for stage in ("aggregate", "personality", "sequences"):
        run_stage(stage, ctx)
    current = Context(ctx.cfg.with_overrides(**{"model.objective": "current"}), spark, ctx.tables, ctx.taxonomy)
    seq_version = ctx.tables.version("sequences")                # trait parts: their variance is checked too
    train = ctx.tables.read("sequences").where("eligible and split = 'train'")
    require_learnable(current, train, feature_scaling(ctx, seq_version)[0], sequences_record(current, seq_version))


def test_the_generated_data_has_something_to_learn(spark, cfg):
    ctx = Context.create(cfg.with_overrides(**{"model.objective": "current"}), spark)   # traits checked too
    for stage in ("generate", "ingest", "aggregate", "personality", "sequences"):
        run_stage(stage, ctx)
    seq_version = ctx.tables.version("sequences")
    train = ctx.tables.read("sequences").where("eligible and split = 'train'")
    means, record = feature_scaling(ctx, seq_version)[0], sequences_record(ctx, seq_version)
    assert len(learnable.classes_with_spend(record["feature_names"], means)) > 10
    assert min(learnable.trait_variance(train)) > 1e-3
    require_learnable(ctx, train, means, record)


def test_statements_mapping_categories_need_their_column_and_known_classes(tmp_path):
    mapping = yaml.safe_load(open("conf/sources/statements.yaml"))
    classes = ["utilities", "transfer_in", "groceries"]
    bad = {**mapping, "categories": {"FOOD": "groceries"}}                   # no columns.category
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="`columns.category`"):
        statements.load_mapping(tmp_path / "a.yaml", classes)
    unknown = {**bad, "columns": {**mapping["columns"], "category": "bill_type"},
               "categories": {"FOOD": "groceries", "FUN": "partying"}}
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(unknown))
    with pytest.raises(ConfigError, match=r"categories\['FUN'\] maps to 'partying', not a class"):
        statements.load_mapping(tmp_path / "b.yaml", classes)


def test_training_on_spend_in_one_class_stops_before_any_model_version_is_registered(one_class):
    with pytest.raises(learnable.NothingToLearn, match=r"1 class \(utilities\).*statements mapping `columns.category`"):
        run_stage("train", one_class)
    tracking.setup(one_class.cfg)
    assert MlflowClient().search_model_versions(f"name = '{one_class.cfg.mlflow.registered_model}'") == []


def test_segmenting_constant_traits_gives_one_segment_and_says_why(one_class):
    out = run_stage("segment", one_class.for_variant("traits"))
    assert out["coarse_k"] == out["k"] == 1 and out["degenerate"]
    assert out["degenerate_reason"].startswith("the vectors are not distinguishable (coarse: ")
    assert "1 distinct: one segment" in out["degenerate_reason"]


# --- promotion ------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", [float("nan"), 0.0])
def test_a_non_finite_or_zero_validation_loss_is_never_promoted(tmp_path, loss):
    from microseg.model.networks import LSTMEncoder
    from microseg.model.train import state_bytes

    tracking.setup(load_config("local", overrides={"tables.root": str(tmp_path)}))
    model = LSTMEncoder({"n_features": 11, "hidden": 4, "months": 3, "objective": "current"})
    record = {"objective": {"traits@0": 1.0}, "feature_names": [f"f{i}" for i in range(11)], "taxonomy_version": "t"}
    with mlflow.start_run():
        version = tracking.log_encoder(state_bytes(model), {"model": model.spec, "months": 3, **record},
                                       [0.0] * 33, "degenerate")
        promotion = tracking.promote_if_better("degenerate", "champion", version, lambda w, s: loss)
        tracking.record_promotion("degenerate", version, promotion)
    assert promotion.outcome == "refused" and not promotion.promoted
    assert "not finite or zero" in promotion.reason
    assert tracking.alias_version("degenerate", "champion") is None
    assert math.isnan(promotion.losses["challenger"]) or promotion.losses["challenger"] == 0.0
    mlflow.set_tracking_uri(None)


# --- segmentation -----------------------------------------------------------------------------

def _frame(spark, points):
    rows = [(f"C{i}", [float(v) for v in p]) for i, p in enumerate(points)]
    return spark.createDataFrame(rows, "customer_id string, embedding array<double>").selectExpr(
        "*", "date'2024-03-01' as as_of", "'1' as model_version")


def _seg_cfg(**kw):
    return SegmentConfig(min_size=1, sample_rows=1000, **kw)


def test_vectors_equal_but_for_rounding_noise_are_one_point(spark):
    noisy = [[0.4 + i * 1e-13, -0.1, 0.0] for i in range(40)]          # distinct bits, one point
    seg = segment.fit(_frame(spark, noisy), _seg_cfg(), 1)
    assert len(seg.coarse) == len(seg.micro) == 1
    assert seg.one_point == "coarse: 40 sampled vectors, 1 distinct: one segment"
    sizes = segment.assign(_frame(spark, noisy), seg).groupBy("segment", "coarse_segment").count() \
        .withColumnRenamed("count", "customers").toPandas()
    flags = segment.degeneracy(sizes, _seg_cfg(), seg.one_point)
    assert flags["degenerate"] and flags["degenerate_reason"].startswith(
        "the vectors are not distinguishable (coarse: 40 sampled vectors, 1 distinct: one segment); coarse segment 0")


@pytest.mark.parametrize("fixed", [None, 8])
def test_three_distinct_points_with_k_up_to_8_choose_k_of_at_most_3(spark, fixed):
    points = [[0.0, 0.0], [40.0, 0.0], [0.0, 40.0]] * 15
    grid = list(range(2, 9))
    seg = segment.fit(_frame(spark, points), _seg_cfg(coarse_k_grid=grid, micro_k_grid=grid, coarse_k=fixed), 1)
    assert len(seg.coarse) == len(seg.micro) == 3 and seg.one_point is None
    assert set(seg.coarse_curve) <= {2, 3}
    assert any("only 3 distinct vectors" in m for m in seg.messages)
