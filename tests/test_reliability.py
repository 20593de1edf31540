"""Reliability, fast: a stage SIGKILLed mid-write recovers on re-run; training SIGKILLed
mid-epoch resumes to the same weights; concurrent writers all land; the same table
versions, config and seed give the same model, embeddings and segments; a run is
reproduced from its MLflow record. ``make reliability`` runs the full fault-injection
harness."""

import random
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import pytest
from pyspark.sql import functions as F

from microseg import pipeline, tracking
from microseg.config import load_config
from microseg.reproduce import config_from_run
from microseg.tables import Tables
from reliability import trials
from reliability.fingerprint import ABSENT, fingerprint, table_fingerprint
from reliability.lakehouse import Lakehouse

OVERRIDES = {
    "spark.shuffle_partitions": 4, "generator.customers": 60, "generator.months": 12,
    "generator.partitions": 2, "sequences.window_months": 12, "sequences.min_months": 4,
    "model.hidden": 8, "model.epochs": 2, "model.batch_size": 32, "train.launcher": "single",
    "segment.k": 3, "segment.coarse_k": 2, "ingest.today": "2024-06-30",
    "sequences.reference": "as_of",       # 12 months leave no room for a loan's 6 + 6 months
}
# two ranks, three epochs of 40 steps: a second or more each, room for a kill inside one
DISTRIBUTED = {"train.launcher": "torch_distributor", "train.num_processes": 2, "model.epochs": 3,
               "model.steps_per_epoch": 40}
HALVES = ("{root}/landing/transactions/month=2023-0[1-6]",
          "{root}/landing/transactions/month=2023-{0[7-9],1[0-2]}")


def poll(condition, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    """The flow up to segments on 60 customers; returns the context and each stage's result."""
    root = tmp_path_factory.mktemp("reliability") / "lakehouse"
    ctx = pipeline.Context.create(load_config("local", overrides={**OVERRIDES, "tables.root": str(root)}), spark)
    out = {s: pipeline.run_stage(s, ctx) for s in ["generate", "ingest", "aggregate", "personality", "sequences",
                                                   "train", "embed", "segment"]}
    return ctx, out


def test_a_stage_killed_during_its_writes_shows_nothing_partial_and_recovers(built, spark, tmp_path):
    ctx, _ = built
    outputs = pipeline.STAGES["aggregate"].outputs
    clean = {k: table_fingerprint(ctx.tables, k) for k in outputs}
    lake = Lakehouse(tmp_path, OVERRIDES, spark)
    shutil.copytree(ctx.tables.location("transactions"), lake.tables.location("transactions"))
    folders = lake.folders(outputs)

    proc = lake.start("aggregate", "killed")
    assert proc.wait_for_new_file(folders, set()) is not None      # its first output file is on disk
    assert proc.kill()                                             # SIGKILL, JVM and all, mid-write
    seen = lake.fingerprints(outputs)
    assert all(seen[k] in (ABSENT, clean[k]) for k in outputs), seen   # no partial table visible

    pipeline.run_stage("aggregate", pipeline.Context.create(lake.cfg, spark))
    assert lake.fingerprints(outputs) == clean


def test_two_ingests_at_once_both_land_without_duplicates(built, spark, tmp_path):
    ctx, out = built
    root = tmp_path / "lakehouse"
    shutil.copytree(ctx.tables.root / "landing", root / "landing")
    cfg = ctx.cfg.with_overrides(**{"tables.root": str(root)})
    contexts = [pipeline.Context.create(cfg.with_overrides(**{"source.path": p}), spark.newSession())
                for p in HALVES]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda c: pipeline.run_stage("ingest", c), contexts))

    assert all(r["rows_inserted"] == r["rows_valid"] > 0 for r in results)
    tables = Tables(spark, cfg)
    tx = table_fingerprint(tables, "transactions")
    assert tx.rows == tx.keys == sum(r["rows_valid"] for r in results) == out["ingest"]["rows_valid"]
    # the rows of the one-batch ingest; the batch and the copied files' paths differ
    same = [fingerprint(t.read("transactions").drop("batch_id", "source_file"), None) for t in (tables, ctx.tables)]
    assert same[0] == same[1]
    landed = {r.batch_id: r["count"] for r in tables.read("quarantine").groupBy("batch_id").count().collect()}
    assert all(landed.get(r["batch_id"], 0) == r["rows_quarantined"] for r in results)


@pytest.mark.parametrize("exists", [True, False], ids=["merge", "create"])
def test_a_write_that_loses_a_race_is_retried(spark, tmp_path, caplog, exists):
    """The first writer's transaction is held open (its source blocks on a file) while a
    second writer commits; the first's commit conflicts, and it is tried again."""
    cfg = load_config("local", overrides={"tables.root": str(tmp_path / "lakehouse")})
    schema = "source string, txn_id string"
    first, second = Tables(spark, cfg), Tables(spark.newSession(), cfg)
    first.backoff_s = 0.05
    if exists:
        second.merge_new("transactions", spark.createDataFrame([("s", "0")], schema), ["source", "txn_id"])
    started, go = tmp_path / "started", tmp_path / "go"

    @F.udf("string")
    def held(txn_id):
        Path(started).touch()
        while not Path(go).exists():
            time.sleep(0.01)
        return txn_id

    blocked = spark.createDataFrame([("s", "1")], schema).withColumn("txn_id", held("txn_id"))
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(first.merge_new, "transactions", blocked, ["source", "txn_id"])
        poll(started.exists)
        second.merge_new("transactions", spark.createDataFrame([("s", "2")], schema), ["source", "txn_id"])
        go.touch()
        assert pending.result() == 1
    assert "merge_new bronze.transactions: concurrent commit" in caplog.text
    expected = ["0", "1", "2"] if exists else ["1", "2"]
    assert sorted(r.txn_id for r in first.read("transactions").collect()) == expected


def test_a_first_write_that_finds_the_table_created_meanwhile_merges_into_it(spark, tmp_path, monkeypatch):
    """Between "no table yet" and the write, another writer creates it: the write must not
    replace that writer's rows (it creates only if absent, then retries as a merge)."""
    tables = Tables(spark, load_config("local", overrides={"tables.root": str(tmp_path / "lakehouse")}))
    schema, keys = "source string, txn_id string", ["source", "txn_id"]
    tables.merge_new("transactions", spark.createDataFrame([("s", "0")], schema), keys)   # the other writer
    answers = iter([False])                           # what this writer saw just before
    monkeypatch.setattr(tables, "exists", lambda key: next(answers, True))
    assert tables.merge_new("transactions", spark.createDataFrame([("s", "1")], schema), keys) == 1
    assert sorted(r.txn_id for r in tables.read("transactions").collect()) == ["0", "1"]


def test_training_killed_mid_epoch_resumes_to_the_same_weights(built, spark, tmp_path):
    """The harness's training trial once: TorchDistributor with 2 ranks, its process group
    SIGKILLed in epoch 2 (after epoch 1's checkpoint); no rank outlives the kill, the re-run
    resumes from epoch 1, and the weights after epochs 2 and 3 and those logged equal an
    uninterrupted run's, bit for bit."""
    ctx, _ = built
    lake = Lakehouse(tmp_path, {**OVERRIDES, **DISTRIBUTED}, spark)
    for key in ("sequences", "feature_stats"):     # as built: the last test writes newer sequences
        shutil.copytree(ctx.tables.location(key), lake.tables.location(key))
    clean = trials.clean_training(lake)
    assert len(clean.weights) == 3 == len(set(clean.weights))        # every epoch moved the weights

    trial = trials.training_kill_trial(lake, clean, random.Random(1), 1)   # draws k = 1 of 1..2
    assert trial.killed and "2 ranks running" in trial.detail["killed"], trial.detail["killed"]
    assert trial.detail["resumed from epoch"] == 1
    assert trial.survived, trial.detail["problems"]


def _weights(name: str, version: str) -> bytes:
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}"))
    return next(local.rglob("encoder.pt")).read_bytes()


def test_a_run_is_reproduced_from_its_mlflow_record(built, spark):
    """New sequences land after training; the run's record pins what it read, and the
    retrained model, its embeddings and segments are identical to the recorded ones."""
    ctx, out = built
    recorded = {k: ctx.tables.version(k) for k in ("sequences", "embeddings", "segments", "segment_centroids")}
    old = ctx.tables.read("sequences")
    ctx.tables.overwrite("sequences", old.where(F.col("split") == "train"))   # newer data: a new version

    cfg = config_from_run(out["train"]["run_id"], tracking.tracking_uri(ctx.cfg))
    assert cfg.tables.pinned == {"sequences": recorded["sequences"], "feature_stats": 0}
    again = pipeline.Context.create(cfg, spark)
    assert again.tables.version("sequences") == recorded["sequences"]
    assert fingerprint(again.tables.read("sequences"), ["customer_id"]) == \
        fingerprint(ctx.tables.read("sequences", version=recorded["sequences"]), ["customer_id"])

    retrained = pipeline.run_stage("train", again)
    name = out["train"]["model"]
    assert _weights(name, str(retrained["model_version"])) == _weights(name, str(out["train"]["model_version"]))
    assert retrained["promoted"] is False            # no better than the champion it equals

    for stage in ("embed", "segment"):
        pipeline.run_stage(stage, again)
    for key in ("embeddings", "segments", "segment_centroids"):
        before = ctx.tables.read(key, version=recorded[key])
        now = again.tables.read(key)
        assert ctx.tables.version(key) > recorded[key]                      # written again...
        assert before.count() == now.count() > 0
        assert before.exceptAll(now).count() == 0 == now.exceptAll(before).count(), key   # ...identically
