"""Files -> canonical rows -> bronze + quarantine: every bad-row kind, the accounting
invariant, whole-file errors, idempotent re-ingest and an incremental month."""

import datetime as dt
import json
import os
import re
import time
from pathlib import Path

import pytest
import yaml
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from microseg import pipeline
from microseg.prep.ingest import BRONZE_COLUMNS, QUARANTINE_COLUMNS, REASONS, validate
from microseg.sources.contract import SourceError
from microseg.sources.files import check_files, list_files, load_mapping, parse_date, read_files
from microseg.stages.prep import BRONZE_STATS


@pytest.mark.parametrize("source, change, named", [
    ("generated.yaml", {"columns": {"amount": {"column": "amount", "format": "#.##"}}}, "columns.amount.format"),
    ("generated.yaml", {"category_map": {"5411": "groceries"}}, "category_map"),
    ("generated.yaml", {"amount_scale": 100}, "amount_scale"),
    ("statements.yaml", {"columns": {"currency": "ccy"}}, "default_currency"),
])
def test_a_mapping_key_that_nothing_reads_fails_at_load_naming_it(tmp_path, source, change, named):
    from microseg.config import ConfigError, deep_merge
    from microseg.sources import statements

    mapping = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "sources" / source).read_text())
    path = tmp_path / source
    path.write_text(yaml.safe_dump(deep_merge(mapping, change)))
    with pytest.raises(ConfigError, match=re.escape(named) + r".*nothing would read it"):
        if source == "statements.yaml":
            statements.load_mapping(path, ["transfer_in", "utilities"])
        else:
            load_mapping(path)

HEADER = "customer_id,txn_id,booking_date,amount,currency,category,balance_after"
GOOD = [
    "C1,t01,2024-01-05,-10.5,EUR,groceries,100",
    "C1,t02,2024-01-06,2000,EUR,salary,2100",
    "C2,t03,2024-01-07,-3,EUR,charity,",
]
BAD = {  # one line per reason code
    "MALFORMED_LINE": '"C3,t04,2024-01-05,-1,EUR,groceries,1',
    "UNPARSABLE_DATE": "C3,t05,2024-13-45,-1,EUR,groceries,1",
    "UNPARSABLE_AMOUNT": "C3,t06,2024-01-05,12.5.3,EUR,groceries,1",
    "UNPARSABLE_BALANCE": "C3,t07,2024-01-05,-1,EUR,groceries,n/a",
    "MISSING_CUSTOMER_ID": ",t08,2024-01-05,-1,EUR,groceries,1",
    "MISSING_TXN_ID": "C3,,2024-01-05,-1,EUR,groceries,1",
    "MISSING_DATE": "C3,t10,,-1,EUR,groceries,1",
    "MISSING_AMOUNT": "C3,t11,2024-01-05,,EUR,groceries,1",
    "DATE_OUT_OF_WINDOW": "C3,t12,1899-12-31,-1,EUR,groceries,1",
    "DATE_IN_FUTURE": "C3,t13,2999-01-01,-1,EUR,groceries,1",
    "ABSURD_AMOUNT": "C3,t14,2024-01-05,-99999999999,EUR,groceries,1",
    "UNKNOWN_CURRENCY": "C3,t15,2024-01-05,-1,XXX,groceries,1",
    "UNKNOWN_CATEGORY": "C3,t16,2024-01-05,-1,EUR,mystery_shop,1",
    "DUPLICATE_TXN_ID": "C1,t01,2024-01-09,-99,EUR,groceries,1",
}


def _write(folder, name, lines):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(lines) + "\n")


@pytest.fixture
def landing(cfg, tmp_path):
    folder = tmp_path / "landing" / "transactions"
    _write(folder / "month=2024-01", "part-0.csv", [HEADER, *GOOD, *BAD.values()])
    return cfg.with_overrides(**{"source.path": str(folder), "ingest.today": "2025-01-01",
                                 "source.loans": None})


def test_every_bad_row_kind_is_quarantined_with_its_reason(spark, landing):
    assert set(BAD) == set(REASONS) - {"BAD_ENCODING", "NEGATIVE_AMOUNT"}   # those: tests/test_bad_input.py
    ctx = pipeline.Context.create(landing, spark)
    out = pipeline.run_stage("ingest", ctx)
    assert out["rows_read"] == len(GOOD) + len(BAD)
    assert out["rows_read"] == out["rows_valid"] + out["rows_quarantined"]   # nothing lost
    assert out["rows_inserted"] == len(GOOD)
    q = ctx.tables.read("quarantine")
    assert q.columns == QUARANTINE_COLUMNS
    got = {r.reason: r for r in q.collect()}
    assert set(got) == set(BAD) and q.count() == len(BAD)
    for reason, line in BAD.items():
        row = got[reason]
        assert row.source_file.endswith("part-0.csv") and row.batch_id == out["batch_id"]
        if reason == "MALFORMED_LINE":
            assert row.raw_row == line                    # the line itself, verbatim
        else:
            assert list(json.loads(row.raw_row).values()) == [v or None for v in line.split(",")]
    bronze = ctx.tables.read("transactions")
    assert bronze.columns == BRONZE_COLUMNS
    kept = {r.txn_id: r for r in bronze.collect()}
    assert set(kept) == {"t01", "t02", "t03"}
    assert kept["t01"].amount == -10.5 and kept["t01"].month == dt.date(2024, 1, 1)
    assert kept["t03"].balance_after is None               # optional and empty: kept


def test_reingest_adds_nothing_and_a_new_month_appends_only_its_rows(spark, landing):
    ctx = pipeline.Context.create(landing, spark)
    first = pipeline.run_stage("ingest", ctx)
    again = pipeline.run_stage("ingest", ctx)
    assert again["batch_id"] == first["batch_id"]
    assert again["rows_inserted"] == 0 and again["rows_already_present"] == first["rows_valid"]
    assert ctx.tables.read("transactions").count() == first["rows_inserted"]
    assert ctx.tables.read("quarantine").count() == first["rows_quarantined"]   # replaced, not doubled
    # a new month's file lands beside the old one: only its rows are inserted
    folder = ctx.cfg.data_path(ctx.cfg.source.path)
    _write(Path(folder) / "month=2024-02", "part-0.csv",
           [HEADER, "C1,t20,2024-02-03,-7,EUR,dining,93", "C2,t21,2024-02-04,-8,EUR,pets,"])
    third = pipeline.run_stage("ingest", ctx)
    assert third["batch_id"] != first["batch_id"]
    assert third["rows_inserted"] == 2 and third["rows_already_present"] == first["rows_valid"]
    assert ctx.tables.read("transactions").select("txn_id").distinct().count() == first["rows_inserted"] + 2


def _nothing_cached(spark) -> bool:
    return spark._jsparkSession.sharedState().cacheManager().isEmpty()


def test_a_batch_of_new_months_merges_without_reading_the_older_months(spark, landing):
    spark.catalog.clearCache()
    ctx = pipeline.Context.create(landing, spark)
    pipeline.run_stage("ingest", ctx)
    assert _nothing_cached(spark)   # a batch with a repeated txn_id: its cache released
    assert ctx.tables.history("transactions").head()["operation"] == "WRITE"   # the first batch: created
    folder = Path(ctx.cfg.data_path(ctx.cfg.source.path)) / "month=2024-02"
    _write(folder, "part-0.csv", [HEADER, "C1,t20,2024-02-03,-7,EUR,dining,93", "C1,t01,2024-02-04,-8,EUR,pets,"])
    february = pipeline.Context.create(landing.with_overrides(**{"source.path": str(folder)}), spark)
    out = pipeline.run_stage("ingest", february)   # t01 again, in another month: a row of its own
    assert _nothing_cached(spark)   # the usual batch, no txn_id repeated: its cache released too
    merge = ctx.tables.history("transactions").head()
    assert out["rows_inserted"] == 2 and merge["operation"] == "MERGE"
    # the MERGE read no file of January's partition (Delta reports no target scan, or 0 files after skipping)
    assert int(merge["operationMetrics"].get("numTargetFilesAfterSkipping", 0)) == 0
    assert pipeline.run_stage("ingest", february)["rows_inserted"] == 0   # the same batch again
    assert DeltaTable.forPath(spark, ctx.tables.location("transactions")).detail().head()["partitionColumns"] == ["month"]
    # every file, written by the first batch or by the MERGE, has statistics of BRONZE_STATS only
    adds = [json.loads(line)["add"] for log in sorted(Path(ctx.tables.location("transactions"), "_delta_log").glob("*.json"))
            for line in log.read_text().splitlines() if '"add"' in line]
    assert len({a["partitionValues"]["month"] for a in adds}) == 2
    assert all(set(json.loads(a["stats"])["minValues"]) == set(BRONZE_STATS) for a in adds)


def test_unknown_category_can_be_kept_as_unclassified(spark, landing):
    cfg = landing.with_overrides(**{"ingest.unknown_category": "unclassified"})
    ctx = pipeline.Context.create(cfg, spark)
    out = pipeline.run_stage("ingest", ctx)
    assert "UNKNOWN_CATEGORY" not in out["quarantine_reasons"]
    row = ctx.tables.read("transactions").where(F.col("txn_id") == "t16").head()
    assert row.txn_class == "unclassified" and row.raw_category == "mystery_shop"
    assert out["rows_read"] == out["rows_valid"] + out["rows_quarantined"]


def test_validate_applies_the_date_window(spark, ctx):
    from tests.conftest import canonical_rows

    rows = canonical_rows(spark, [("C1", "a", dt.date(2023, 12, 31), -1.0, "EUR", "groceries", None),
                                  ("C1", "b", dt.date(2024, 3, 31), -1.0, "EUR", "groceries", None),
                                  ("C1", "c", dt.date(2024, 4, 1), -1.0, "EUR", "groceries", None)])
    rules = type(ctx.cfg.ingest).model_validate(
        {**ctx.cfg.ingest.model_dump(), "date_window": {"start": "2024-01", "end": "2024-03"}})
    good, bad = validate(rows, "s", "b", rules, [c.name for c in ctx.taxonomy.classes], dt.date(2025, 1, 1))
    assert [r.txn_id for r in good.collect()] == ["b"]
    assert sorted((r.txn_id, r.reason) for r in bad.collect()) == [
        ("a", "DATE_OUT_OF_WINDOW"), ("c", "DATE_OUT_OF_WINDOW")]


def test_a_file_missing_a_required_column_fails_naming_file_and_column(spark, cfg, tmp_path):
    folder = tmp_path / "in"
    _write(folder, "x.csv", ["customer_id,txn_id,amount,currency,category", "C1,t1,-1,EUR,groceries"])
    mapping = load_mapping("conf/sources/generated.yaml")
    files = check_files(list_files(spark, str(folder)), str(folder), "csv")
    with pytest.raises(SourceError, match=r"x\.csv: required columns? 'booking_date'"):
        read_files(spark, files, mapping)


def test_empty_and_wrong_format_files_fail_before_anything_is_written(spark, cfg, tmp_path):
    folder = tmp_path / "in"
    _write(folder, "good.csv", [HEADER, *GOOD])
    (folder / "empty.csv").write_text("")
    run_cfg = cfg.with_overrides(**{"source.path": str(folder), "source.loans": None})
    ctx = pipeline.Context.create(run_cfg, spark)
    with pytest.raises(SourceError, match=r"empty\.csv: file is empty"):
        pipeline.run_stage("ingest", ctx)
    (folder / "empty.csv").unlink()
    (folder / "notes.json").write_text("{}")
    with pytest.raises(SourceError, match=r"notes\.json: not a csv file"):
        pipeline.run_stage("ingest", ctx)
    assert not ctx.tables.exists("transactions") and not ctx.tables.exists("quarantine")
    with pytest.raises(SourceError, match="no files at"):
        check_files([], "/nowhere", "csv")


def test_a_card_feed_coded_by_mcc_reads_through_a_mapping(spark, cfg, tmp_path):
    folder = tmp_path / "cards"
    _write(folder, "cards.csv", [
        "card_holder;auth_id;posted;amount;mcc",
        "C1;a1;05.01.2024;12.50;5411",
        "C1;a2;06.01.2024;40.00;5813",
        "C2;a3;07.01.2024;9.99;0742",
        "C2;a4;07.01.2024;5.00;abc",
    ])
    run_cfg = cfg.with_overrides(**{"source.path": str(folder), "source.mapping": "conf/sources/card_mcc.yaml",
                                    "source.loans": None, "ingest.today": "2025-01-01"})
    ctx = pipeline.Context.create(run_cfg, spark)
    out = pipeline.run_stage("ingest", ctx)
    assert out["batch_id"].startswith("card_mcc:")
    rows = {r.txn_id: (r.txn_class, r.amount, r.raw_category) for r in ctx.tables.read("transactions").collect()}
    assert rows == {"a1": ("groceries", -12.5, "5411"), "a2": ("pubs_bars", -40.0, "5813"),
                    "a3": ("pets", -9.99, "0742")}
    assert out["quarantine_reasons"] == {"UNKNOWN_CATEGORY": 1}


def test_monthly_statements_become_two_transactions_each(spark, cfg, tmp_path):
    folder = tmp_path / "statements"
    _write(folder, "s.csv", ["account,period,closing_balance,payments_in,bills_paid",
                             "A1,2024-01,1500,2000,500", "A1,2024-02,1200,0,300", "A2,2024-13,1,1,1"])
    run_cfg = cfg.with_overrides(**{"source.adapter": "statements", "source.path": str(folder),
                                    "source.mapping": "conf/sources/statements.yaml", "source.loans": None,
                                    "ingest.today": "2025-01-01"})
    ctx = pipeline.Context.create(run_cfg, spark)
    out = pipeline.run_stage("ingest", ctx)
    assert out["rows_read"] == 6 and out["quarantine_reasons"] == {"UNPARSABLE_DATE": 2}
    rows = {r.txn_id: (str(r.booking_date), r.amount, r.txn_class, r.balance_after)
            for r in ctx.tables.read("transactions").collect()}
    assert rows == {
        "A1-2024-01-in": ("2024-01-01", 2000.0, "transfer_in", None),
        "A1-2024-01-out": ("2024-01-31", -500.0, "utilities", 1500.0),
        "A1-2024-02-in": ("2024-02-01", 0.0, "transfer_in", None),
        "A1-2024-02-out": ("2024-02-29", -300.0, "utilities", 1200.0),
    }


def test_the_default_date_format_reads_the_same_dates_as_spark_pattern_parser(spark):
    texts = ["2024-01-05", "2024-02-29", "2023-02-29", "2024-13-01", "2024-01-00", "2024-1-5", "2024-01-5T",
             "2024-01-05T10:00", "2024-01-05 ", "2024-01-05\n", "2024", "2024-01", "2024/01/05", "2024-01-0a",
             "0000-01-01", "-0001-01-01", "+10000-01-01", "10000-01-01", "+2024-01-05", "\uff12024-01-05", None]
    df = spark.createDataFrame([(t,) for t in texts], "text string")
    text = F.col("text")
    got = df.select("text", parse_date(text, "yyyy-MM-dd").cast("string").alias("fast"),
                    F.try_to_timestamp(text, F.lit("yyyy-MM-dd")).cast("date").cast("string").alias("parser"),
                    parse_date(text, "dd.MM.yyyy").cast("string").alias("other")).collect()
    assert [(r.text, r.fast) for r in got] == [(r.text, r.parser) for r in got]
    assert sum(r.fast is not None for r in got) == 5      # the two real dates, years 0, -1 and 10000
    assert all(r.other is None for r in got)              # another pattern still reads by its parser


@pytest.mark.parametrize("fmt", ["parquet", "json"])
def test_parquet_and_json_read_through_the_same_mapping(spark, cfg, tmp_path, fmt):
    rows = [("C1", "p1", "2024-01-05", "-10.5", "EUR", "groceries", "90"),
            ("C1", "p2", "2024-02-30", "-1", "EUR", "groceries", None)]
    df = spark.createDataFrame(rows, "customer_id string, txn_id string, booking_date string, amount string, "
                                     "currency string, category string, balance_after string")
    folder = str(tmp_path / fmt)
    getattr(df.coalesce(1).write, fmt)(folder)
    mapping = load_mapping("conf/sources/generated.yaml").model_copy(update={"format": fmt, "options": {}})
    files = check_files(list_files(spark, folder), folder, fmt)
    got = {r.txn_id: r for r in read_files(spark, files, mapping).collect()}
    assert got["p1"].amount == -10.5 and got["p1"].booking_date == dt.date(2024, 1, 5)
    assert got["p1"].parse_error is None and got["p1"].balance_after == 90.0
    assert got["p2"].parse_error == "UNPARSABLE_DATE"


def test_customer_and_transaction_ids_can_be_pseudonymised_with_a_key_from_the_environment(spark, landing, monkeypatch):
    import hashlib
    import hmac

    from microseg.config import ConfigError
    from microseg.prep.pseudonymise import keyed_hmac

    key = "a-test-key-of-enough-length"
    ids = ["C1", "C00000042", "Zoë-7", "x" * 100, None]
    got = spark.createDataFrame([(i,) for i in ids], "id string").select(
        "id", keyed_hmac(spark, key.encode())(F.col("id")).alias("p")).collect()
    assert {r.id: r.p for r in got} == {i: i and hmac.new(key.encode(), i.encode(), hashlib.sha256).hexdigest()
                                        for i in ids}
    cfg = landing.with_overrides(**{"ingest.pseudonymise": True})
    ctx = pipeline.Context.create(cfg, spark)
    monkeypatch.delenv("MICROSEG_PSEUDONYM_KEY", raising=False)
    with pytest.raises(ConfigError, match="MICROSEG_PSEUDONYM_KEY holds no key"):
        pipeline.run_stage("ingest", ctx)
    monkeypatch.setenv("MICROSEG_PSEUDONYM_KEY", key)
    out = pipeline.run_stage("ingest", ctx)
    kept = ("t01", "t02", "t03")
    assert out["rows_read"] == out["rows_valid"] + out["rows_quarantined"] and out["rows_valid"] == len(kept)
    bronze = ctx.tables.read("transactions").collect()
    pseudonym = {i: hmac.new(key.encode(), i.encode(), hashlib.sha256).hexdigest() for i in ("C1", "C2", *kept)}
    assert {r.customer_id for r in bronze} == {pseudonym["C1"], pseudonym["C2"]}
    assert {r.txn_id for r in bronze} == {pseudonym[t] for t in kept}     # transaction ids too
    assert out["quarantine_reasons"]["MISSING_CUSTOMER_ID"] == 1          # blanks are still caught
    # the loan book joins on the same pseudonyms
    loans = Path(cfg.data_path("{root}")) / "loans"
    _write(loans, "loans.csv", ["customer_id,loan_id,loan_status", "C1,L1,B", "C2,L2,A"])
    ctx = pipeline.Context.create(cfg.with_overrides(**{"source.loans": str(loans)}), spark)
    pipeline.run_stage("aggregate", ctx)
    pipeline.run_stage("labels", ctx)
    labels = {r.customer_id: r.loan_default for r in ctx.tables.read("labels").collect()}
    assert labels == {hmac.new(key.encode(), b"C1", hashlib.sha256).hexdigest(): 1,
                      hmac.new(key.encode(), b"C2", hashlib.sha256).hexdigest(): 0}


def test_a_row_the_reader_drops_fails_the_ingest_naming_file_and_counts(spark, cfg, tmp_path):
    mapping = yaml.safe_load(Path("conf/sources/generated.yaml").read_text())
    (tmp_path / "mapping.yaml").write_text(yaml.safe_dump({**mapping, "options": {"sep": ",", "comment": "#"}}))
    folder = tmp_path / "in"
    _write(folder, "a.csv", [HEADER, *GOOD, "#C9,t09,2024-01-05,-1,EUR,groceries,1"])   # read as a comment
    _write(folder, "b.csv", [HEADER, *GOOD[:1]])
    run_cfg = cfg.with_overrides(**{"source.path": str(folder), "source.mapping": str(tmp_path / "mapping.yaml"),
                                    "source.loans": None, "ingest.today": "2025-01-01"})
    ctx = pipeline.Context.create(run_cfg, spark)
    with pytest.raises(RuntimeError, match=r"does not add up in 1 file\(s\): \S+/in/a\.csv: 4 rows by its lines, "
                                           r"3 read\. The reader dropped or split rows") as err:
        pipeline.run_stage("ingest", ctx)
    assert "C9" not in str(err.value) and "t09" not in str(err.value)
    assert not ctx.tables.exists("transactions") and not ctx.tables.exists("quarantine")


def test_quarantine_rows_past_their_retention_are_removed_and_the_history_vacuumed(spark, cfg, tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    _write(old, "a.csv", [HEADER, BAD["UNKNOWN_CURRENCY"], BAD["ABSURD_AMOUNT"]])
    _write(new, "a.csv", [HEADER, BAD["UNKNOWN_CATEGORY"]])
    base = cfg.with_overrides(**{"source.loans": None})
    ctx = pipeline.Context.create(base.with_overrides(**{"source.path": str(old), "ingest.today": "2024-12-01"}),
                                  spark)
    first = pipeline.run_stage("ingest", ctx)
    table = Path(ctx.tables.location("quarantine"))
    stale, fresh = table / "part-00000-stale.snappy.parquet", table / "part-00000-fresh.snappy.parquet"
    for path, age_days in ((stale, 9), (fresh, 5)):   # files no version reads, by age
        path.write_bytes(b"PAR1")
        mtime = time.time() - age_days * 86400
        os.utime(path, (mtime, mtime))
    ctx = pipeline.Context.create(base.with_overrides(**{
        "source.path": str(new), "ingest.today": "2025-01-01", "ingest.quarantine_retention_days": 7}), spark)
    out = pipeline.run_stage("ingest", ctx)
    assert out["quarantine_rows_expired"] == first["rows_quarantined"] == 2
    rows = ctx.tables.read("quarantine").collect()
    assert [(r.batch_id, r.reason, r.quarantined_on) for r in rows] == [
        (out["batch_id"], "UNKNOWN_CATEGORY", dt.date(2025, 1, 1))]
    assert not stale.exists() and fresh.exists()                  # vacuumed to 7 days, not more
    props = ctx.tables.history("quarantine").select("operation", "operationParameters").collect()
    assert [p.operation for p in props][:4] == ["VACUUM END", "VACUUM START", "SET TBLPROPERTIES", "DELETE"]
    assert props[1].operationParameters["specifiedRetentionMillis"] == str(7 * 86400 * 1000)
    detail = DeltaTable.forPath(spark, str(table)).detail().head()["properties"]
    assert detail["delta.logRetentionDuration"] == detail["delta.deletedFileRetentionDuration"] == "interval 7 days"
