"""The whole flow on a few hundred customers, run twice: tables, MLflow, segments."""

import importlib.util
import json
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient
from pyspark.sql import functions as F

from microseg import pipeline, tracking
from microseg.model import objectives
from microseg.model.compat import IncompatibleModel
from microseg.prep.sequences import feature_names

OUTPUTS = ["ground_truth", "transactions", "quarantine", "monthly_spend", "monthly_account", "labels",
           "personality", "sequences", "feature_stats", "embeddings", "segment_centroids", "segments",
           "segment_profiles"]


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    from microseg.config import load_config

    cfg = load_config("local", overrides={
        "tables.root": str(tmp_path_factory.mktemp("e2e") / "lakehouse"),
        "spark.shuffle_partitions": 4, "generator.customers": 240, "generator.months": 18,
        "generator.partitions": 2, "sequences.window_months": 12, "sequences.min_months": 4,
        "model.hidden": 8, "model.epochs": 2, "segment.coarse_k_grid": [2, 3], "segment.micro_k_grid": [2, 3],
        "sequences.as_of": "2023-11",          # December is the "new month" of the monthly flow
    })
    ctx = pipeline.Context.create(cfg, spark)
    first = pipeline.run_all(ctx)
    counts1 = {k: ctx.tables.read(k).count() for k in OUTPUTS}
    segments1 = ctx.tables.read("segments").select("customer_id", "segment").collect()
    second = pipeline.run_all(ctx)
    return ctx, first, second, counts1, segments1


def test_every_stage_ran_and_tables_have_history(runs):
    ctx, first, second, _, _ = runs
    assert list(first) == pipeline.FLOWS["all"]
    for key in OUTPUTS:
        versions = [r.version for r in ctx.tables.history(key).select("version").collect()]
        assert versions, key
    # overwritten tables: one version per run; bronze: the re-ingest merged nothing new
    assert ctx.tables.version("sequences") == 1
    assert ctx.tables.version("transactions") == 0
    assert first["ingest"]["rows_inserted"] == first["ingest"]["rows_read"]
    assert second["ingest"]["rows_inserted"] == 0
    assert second["ingest"]["rows_already_present"] == first["ingest"]["rows_read"]
    # every commit says which stage (and, for bronze, which batch) wrote it
    meta = json.loads(ctx.tables.history("transactions").head()["userMetadata"])
    assert meta["stage"] == "ingest" and meta["batch_id"] == first["ingest"]["batch_id"]
    stats = ctx.tables.read("feature_stats").select("sequences_version").distinct().collect()
    assert [r.sequences_version for r in stats] == [ctx.tables.version("sequences")]


def test_rerun_gives_same_counts_and_no_duplicates(runs):
    ctx, _, _, counts1, _ = runs
    assert {k: ctx.tables.read(k).count() for k in OUTPUTS} == counts1
    tx = ctx.tables.read("transactions")
    assert tx.select("source", "txn_id").distinct().count() == counts1["transactions"]
    assert counts1["quarantine"] == 0                                 # clean generated input


def test_every_customer_gets_one_segment(runs):
    ctx, first, _, counts1, segments1 = runs
    n_customers = (ctx.tables.read("monthly_account").where(F.col("month") <= "2023-11-01")
                   .select("customer_id").distinct().count())              # everyone active up to as_of
    assert counts1["sequences"] == counts1["embeddings"] == counts1["segments"] == n_customers > 200
    segs = ctx.tables.read("segments")
    assert segs.select("customer_id").distinct().count() == n_customers
    k, coarse_k = first["segment"]["k"], first["segment"]["coarse_k"]
    assert coarse_k in (2, 3) and first["segment"]["silhouette"] is not None   # chosen by silhouette
    assert coarse_k <= k <= 3 * coarse_k and sum(first["segment"]["micro_k"].values()) == k
    assert {r.segment for r in segs.select("segment").distinct().collect()} == set(range(k))
    assert {r.coarse_segment for r in segs.select("coarse_segment").distinct().collect()} == set(range(coarse_k))
    centroids = ctx.tables.read("segment_centroids").collect()
    assert len(centroids) == k + coarse_k and {r.model_version for r in centroids} == {"1"}
    sizes = ctx.tables.read("segment_profiles").agg(F.sum("customers")).head()[0]
    assert sizes == n_customers
    assert first["segment"]["degenerate"] in (True, False) and "largest_share" in first["segment"]
    # same input, seed and champion: the same segments on the second run
    again = ctx.tables.read("segments").select("customer_id", "segment").collect()
    assert sorted(again) == sorted(segments1)


def test_mlflow_records_the_run_and_registry(runs):
    ctx, first, second, _, _ = runs
    tracking.setup(ctx.cfg)
    client = MlflowClient()
    run = client.get_run(first["train"]["run_id"])
    assert client.get_experiment(run.info.experiment_id).name == ctx.cfg.mlflow.experiment
    assert run.info.artifact_uri.startswith(ctx.tables.root.as_uri())     # inside the lakehouse
    assert run.data.params["model.hidden"] == "8"
    assert run.data.params["train.loader"] == "arrow"
    assert run.data.params["taxonomy.version"] == ctx.taxonomy.version
    parts = objectives.resolve(ctx.cfg.model.objective)
    assert "val_loss" in run.data.metrics
    assert all(f"val_loss_{objectives.metric_key(p)}" in run.data.metrics for p in parts)
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2   # one per epoch
    assert run.data.tags["code_version"]
    assert run.data.tags[f"delta.{ctx.tables.name('sequences')}.version"] == "0"
    name = ctx.cfg.mlflow.registered_model
    champion = client.get_model_version_by_alias(name, ctx.cfg.mlflow.alias)
    assert str(champion.version) == "1" and champion.run_id == run.info.run_id
    assert any(line.startswith(f"model {name}: ") and "champion = 1" in line
               for line in tracking.alias_status(ctx.cfg))
    status = {row["table"]: row for row in pipeline.table_status(ctx)}
    assert status["gold.sequences"]["version"] == ctx.tables.version("sequences")
    assert first["train"]["promotion"] == "first" and run.data.tags["promotion.outcome"] == "first"
    _, spec = tracking.encoder_files(name, 1)
    assert spec["feature_names"] == feature_names(ctx.taxonomy.spend_classes)
    assert spec["taxonomy_version"] == ctx.taxonomy.version
    assert spec["objective"] == parts
    # the same data and seed give the same model: scored beside the champion on the same
    # validation split it is not better, so the champion stays
    assert second["train"]["model_version"] == 2 and second["train"]["promoted"] is False
    again = client.get_run(second["train"]["run_id"]).data
    assert again.tags["promotion.outcome"] == "kept" and again.tags["promotion.champion_version"] == "1"
    losses = again.metrics["promotion.challenger_val_loss"], again.metrics["promotion.champion_val_loss"]
    assert losses[0] == losses[1] == pytest.approx(again.metrics["kept_val_loss"], rel=1e-6)
    assert second["train"]["val_loss"] == first["train"]["val_loss"]
    model = mlflow.pyfunc.load_model(f"models:/{name}@{ctx.cfg.mlflow.alias}")
    emb = ctx.tables.read("embeddings").orderBy("customer_id").limit(3).toPandas()
    seq = ctx.tables.read("sequences").orderBy("customer_id").limit(3).toPandas()
    out = model.predict(seq[["features"]])
    for got, want in zip(out["embedding"], emb["embedding"]):
        assert max(abs(a - b) for a, b in zip(got, want)) < 1e-5


def test_summary_reports_segments(runs, capsys):
    ctx, first, _, _, _ = runs
    k = first["segment"]["k"]
    n = ctx.tables.read("sequences").count()
    assert first["summary"]["customers"] == n and first["summary"]["segments"] == k
    text = open(first["summary"]["report"]).read()
    assert f"segments: {k} in {first['segment']['coarse_k']} coarse segments" in text
    assert f"customers segmented: {n}" in text


def test_training_with_another_objective_registers_but_does_not_compare(runs, caplog):
    """With Petastorm where it is installed: the train stage with the other loader."""
    ctx = runs[0]
    loader = "arrow" if importlib.util.find_spec("petastorm") is None else "petastorm"
    other = pipeline.Context(ctx.cfg.with_overrides(**{"model.objective": "account", "train.loader": loader}),
                             ctx.spark, ctx.tables, ctx.taxonomy)
    with caplog.at_level("WARNING", logger="microseg"):
        out = pipeline.run_stage("train", other)
    tracking.setup(ctx.cfg)
    data = MlflowClient().get_run(out["run_id"]).data
    assert data.params["train.loader"] == loader
    assert out["promotion"] == "refused" and out["promoted"] is False and out["model_version"] == 3
    assert data.tags["promotion.outcome"] == "refused"
    assert "promotion.challenger_val_loss" not in data.metrics                      # not scored
    champion = objectives.resolve(ctx.cfg.model.objective)
    why = f"objective: version 3 has {{'account': 1.0}}, champion 1 has {champion!r}"
    assert why in data.tags["promotion.reason"] and why in caplog.text
    assert tracking.alias_version(out["model"], ctx.cfg.mlflow.alias) == "1"
    with pytest.raises(IncompatibleModel) as err:
        pipeline.run_stage("embed", other)         # the champion was not trained for this objective
    assert (f"objective: model microseg_encoder version 1 has {champion!r}, gold.sequences version "
            f"{ctx.tables.version('sequences')} has {{'account': 1.0}}") in str(err.value)


def test_a_reordered_taxonomy_is_refused_by_embed_and_assign(runs, tmp_path):
    """Sequences rebuilt with the same classes in another order (same taxonomy version),
    into tables of their own, next to the champion's embeddings of that month."""
    ctx = runs[0]
    taxonomy = yaml.safe_load(open(ctx.cfg.conf_path(ctx.cfg.taxonomy)))
    taxonomy["classes"][:2] = taxonomy["classes"][1::-1]
    (tmp_path / "taxonomy.yaml").write_text(yaml.safe_dump(taxonomy))
    reordered = pipeline.Context.create(ctx.cfg.with_overrides(**{
        "taxonomy": str(tmp_path / "taxonomy.yaml"), "tables.names.sequences": "gold.sequences_reordered",
        "tables.names.feature_stats": "gold.feature_stats_reordered"}), ctx.spark)
    assert reordered.taxonomy.version == ctx.taxonomy.version
    pipeline.run_stage("sequences", reordered)
    old, new = feature_names(ctx.taxonomy.spend_classes), feature_names(reordered.taxonomy.spend_classes)
    both = f"has {old!r}, gold.sequences_reordered version 0 has {new!r} (first difference at position 0)"
    for stage in ("embed", "assign"):
        with pytest.raises(IncompatibleModel, match="feature_names") as err:
            pipeline.run_stage(stage, reordered)
        assert both in str(err.value) and "objective" not in str(err.value)


@pytest.fixture(scope="module")
def monthly(runs):
    """The monthly flow for the next month, twice: the second run must change nothing."""
    ctx = runs[0]
    month = pipeline.Context.create(ctx.cfg.with_overrides(**{"sequences.as_of": "2023-12"}), ctx.spark)
    # December's file brings a customer the segmentation has never seen
    new = Path(ctx.cfg.data_path(ctx.cfg.generator.landing)) / "transactions" / "month=2023-12" / "new.csv"
    new.write_text("customer_id,txn_id,booking_date,amount,currency,category,balance_after\n"
                   "N0000001,N1,2023-12-01,2500,EUR,salary,3000\n"
                   "N0000001,N2,2023-12-03,-80,EUR,pubs_bars,2920\n")
    first = pipeline.run_all(month, flow="monthly")
    snapshot = {k: sorted(month.tables.read(k).drop("spend_mix").collect(), key=repr)
                for k in ("segments", "segment_migration", "segment_profiles")}
    second = pipeline.run_all(month, flow="monthly")
    return month, first, second, snapshot


def test_monthly_flow_assigns_with_stored_centroids_and_counts_migrations(monthly):
    month, first, _, _ = monthly
    assert list(first) == pipeline.FLOWS["monthly"]
    assert first["ingest"]["rows_inserted"] == 2          # only the new file's rows
    segs = month.tables.read("segments")
    assert sorted(r.as_of.isoformat() for r in segs.select("as_of").distinct().collect()) == [
        "2023-11-01", "2023-12-01"]
    dec = segs.where(F.col("as_of") == "2023-12-01")
    n_dec = month.tables.read("sequences").count()
    assert dec.count() == n_dec and dec.select("model_version").distinct().head()[0] == "1"
    k = first["assign"]["k"]
    newcomer = dec.where(F.col("customer_id") == "N0000001").head()
    assert 0 <= newcomer.segment < k and newcomer.distance >= 0      # placed by the stored centroids
    centroids = month.tables.read("segment_centroids").collect()
    assert len(centroids) == k + first["assign"]["coarse_k"]       # no refit: still one set
    moved = {(r.from_segment, r.to_segment): r.customers for r in
             month.tables.read("segment_migration").where(F.col("as_of") == "2023-12-01").collect()}
    assert sum(moved.values()) == n_dec
    assert moved[(None, newcomer.segment)] >= 1                     # the arrival
    assert not [key for key in moved if key[1] is None]             # nobody left
    arrivals = sum(n for (old, _), n in moved.items() if old is None)
    assert arrivals == n_dec - segs.where(F.col("as_of") == "2023-11-01").count()   # new in December


def test_rerunning_the_month_changes_nothing(monthly):
    month, first, second, snapshot = monthly
    assert second["assign"]["k"] == first["assign"]["k"]
    for key, rows in snapshot.items():
        assert sorted(month.tables.read(key).drop("spend_mix").collect(), key=repr) == rows, key


@pytest.mark.parametrize("variant", ["traits", "feedforward"])
def test_raw_traits_and_feedforward_features_segment_into_their_own_tables(runs, variant):
    ctx = runs[0]
    overrides = {"segment.features": "traits"} if variant == "traits" else {"model.kind": "feedforward"}
    run = pipeline.Context.create(ctx.cfg.with_overrides(**overrides), ctx.spark)
    stages = ["segment"] if variant == "traits" else ["train", "embed", "segment"]
    out = {name: pipeline.run_stage(name, run) for name in stages}
    segs = run.tables.read(f"segments@{variant}")
    assert run.tables.name(f"segments@{variant}") == f"gold.segments_{variant}"
    assert segs.count() == run.tables.read("sequences").count() and out["segment"]["features"] == variant
    version = segs.select("model_version").distinct().head()[0]
    if variant == "traits":
        assert version == f"traits@{run.taxonomy.version}"
    else:
        assert out["train"]["model"] == "microseg_encoder_feedforward" and version == "1"
        emb = run.tables.read("embeddings@feedforward").head()
        assert len(emb.embedding) == run.cfg.model.hidden
    assert run.tables.read(f"segment_centroids@{variant}").count() == out["segment"]["k"] + out["segment"]["coarse_k"]


def test_report_flow_evaluates_every_variant_and_logs_the_page(runs):
    """After the variants exist, `report` reuses them (no retraining), evaluates on a
    sample and writes one HTML page that MLflow holds too."""
    ctx = runs[0]
    small = pipeline.Context(ctx.cfg.with_overrides(**{
        "evaluate.sample_rows": 200, "evaluate.map_rows": 100, "evaluate.e2e_epochs": 1,
        "evaluate.objectives": ["next", "shape"], "evaluate.objective_epochs": 1, "evaluate.objective_seeds": 2,
        "evaluate.cv_folds": 3, "evaluate.cv_repeats": 1, "evaluate.gbm_iterations": 10}),
        ctx.spark, ctx.tables, ctx.taxonomy)
    for variant in ("traits", "feedforward"):          # the comparison variants, built once
        if not ctx.tables.exists(f"segments@{variant}"):
            pipeline.run_stage("compare", small)
    out = pipeline.run_all(small, flow="report")
    variants = out["compare"]["variants"]
    assert set(variants) == {"lstm", "feedforward", "traits"}
    assert all(v["stages_run"] == 0 for v in variants.values())          # nothing rebuilt
    ev = json.loads(Path(out["evaluate"]["evaluation"]).read_text())
    gran = {row["variant"]: row for row in ev["granularity"]}
    assert set(gran) == {"lstm", "feedforward", "traits"}
    for row in gran.values():
        for col in ("ari_micro", "ari_coarse", "ari_micro_at_planted_k", "ari_two_level_at_planted_k"):
            assert -1 <= row[col] <= 1
        assert 0 <= row["trait_var_within"] <= 1 and row["degenerate"] in (True, False)
    assert {(r["task"], r["metric"]) for r in ev["downstream"]} >= {("liquidity", "macro_f1")}
    for r in ev["downstream"]:
        assert 0 <= r["mean"] <= 1 and r["splits"] == 3 and r["n_labelled"] > 0
    paired = {(r["model"], r["metric"]): r for r in ev["paired"]}
    assert paired[("LSTM features", "macro_f1")]["diff_low"] <= paired[("LSTM features", "macro_f1")]["diff_high"]
    assert ("bespoke GBM + LSTM features", "macro_f1") in paired                 # the lift
    assert len(ev["claims"]) >= 6 and ev["surrogate"]["r2"] <= 1
    runs_of = {(r["variant"], r["seed"]) for r in ev["objectives"] if r["measure"] == "ari_micro"}
    assert runs_of >= {(o, s) for o in ("next", "shape") for s in (small.cfg.seed, small.cfg.seed + 1)}
    assert {r["variant"] for r in ev["objectives"] if r["kind"] == "reference"} == {
        "static shares", "flattened monthly shares", "hand-made temporal", "hand-made temporal on count shares",
        "hand-made temporal on count shares, reliability-weighted"}
    assert ev["surrogate"]["rows"] == ev["meta"]["customers_in_sample"] > 0
    html = Path(out["render"]["report"]).read_text()
    assert html.count("data:image/png;base64,") == 7 and "What the segments are" in html
    tracking.setup(ctx.cfg)
    run = MlflowClient().get_run(out["evaluate"]["run_id"])
    assert run.data.metrics["lstm.k"] == gran["lstm"]["k"]
    assert run.data.tags["report"] == out["render"]["report"]
    logged = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "report")}
    assert "report/report.html" in logged
