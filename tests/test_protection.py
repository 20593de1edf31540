"""Customer data protection: no raw transaction row in logs, errors or printed output, the
pseudonym key never shown (nor in any query plan), the key read from the environment or a
secret scope only, and no real id in the quarantine under pseudonymisation."""

import base64
import hashlib
import hmac
import json
import logging
from pathlib import Path

import pytest
import yaml

from microseg import pipeline
from microseg.config import ConfigError
from microseg.prep.pseudonymise import keyed_hmac, pseudonym_key, pseudonymise_raw_rows
from microseg.sources.contract import SourceError

KEY = "pseudonym-key-" + "7Qx9" * 4
SENTINEL = "SENTINEL_XYZ_4711"
HEADER = "customer_id,txn_id,booking_date,amount,currency,category,balance_after"


def _hmac(value: str) -> str:
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def _ingest(spark, cfg, folder, monkeypatch, **overrides):
    monkeypatch.setenv("MICROSEG_PSEUDONYM_KEY", KEY)
    run_cfg = cfg.with_overrides(**{"source.path": str(folder), "source.loans": None, "ingest.today": "2025-01-01",
                                    "ingest.pseudonymise": True, **overrides})
    ctx = pipeline.Context.create(run_cfg, spark)
    return ctx, pipeline.run_stage("ingest", ctx)


def test_ingest_logs_and_prints_no_raw_row_and_no_key(spark, cfg, tmp_path, caplog, capsys, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("\n".join([
        HEADER, "C1,t1,2024-01-05,-1,EUR,groceries,1",
        f"C1,t2,2024-01-05,-1,EUR,{SENTINEL},1",                        # unknown category
        f'"{SENTINEL}_CUSTOMER,t3,2024-01-05,-1,EUR,groceries,1',       # malformed line
    ]) + "\n")
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="py4j")   # its DEBUG echoes every JVM call: slow, and no rows
    ctx, out = _ingest(spark, cfg, folder, monkeypatch)
    printed = capsys.readouterr()
    assert out["quarantine_reasons"] == {"UNKNOWN_CATEGORY": 1, "MALFORMED_LINE": 1}
    raw = {r.reason: r.raw_row for r in ctx.tables.read("quarantine").collect()}
    assert json.loads(raw["UNKNOWN_CATEGORY"])["category"] == SENTINEL      # a category is no id: kept
    assert json.loads(raw["UNKNOWN_CATEGORY"])["customer_id"] == _hmac("C1")
    assert SENTINEL not in raw["MALFORMED_LINE"]        # the id of a line that did not split: not kept
    info = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert any("ingest" in m for m in info)             # the stage's own INFO line was captured
    assert not any(SENTINEL in m for m in info)
    assert KEY not in caplog.text and not any(KEY in r.getMessage() for r in caplog.records)   # DEBUG too
    for output in (printed.out, printed.err):
        assert SENTINEL not in output and KEY not in output


def test_the_key_comes_from_the_environment_or_a_secret_scope_and_is_never_shown(spark, cfg, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    rules = cfg.with_overrides(**{"ingest.pseudonymise": True}).ingest
    monkeypatch.setenv("MICROSEG_PSEUDONYM_KEY", KEY)
    assert pseudonym_key(rules, spark) == KEY.encode()

    monkeypatch.setenv("MICROSEG_PSEUDONYM_KEY", KEY[:12])
    with pytest.raises(ConfigError, match="MICROSEG_PSEUDONYM_KEY holds a key shorter than 16") as short:
        pseudonym_key(rules, spark)
    assert KEY[:12] not in str(short.value)

    # a secret scope is configured: read there, with no fallback to the variable (another key
    # would give other pseudonyms); outside Databricks that is an error saying what to do
    monkeypatch.setenv("MICROSEG_PSEUDONYM_KEY", KEY)
    secret = cfg.with_overrides(**{"ingest.pseudonymise": True,
                                   "ingest.pseudonym_key_secret": "bank-scope/microseg-key"}).ingest
    with pytest.raises(ConfigError, match="secret scopes need Databricks") as missing:
        pseudonym_key(secret, spark)
    assert "MICROSEG_PSEUDONYM_KEY" in str(missing.value) and KEY not in str(missing.value)
    with pytest.raises(ConfigError, match="write 'scope/key'"):
        pseudonym_key(cfg.with_overrides(**{"ingest.pseudonym_key_secret": "no-slash"}).ingest, spark)
    assert KEY not in caplog.text


def _key_material(key: bytes) -> list[str]:
    """Every 8-byte stretch of the key and of key XOR ipad / opad (RFC 2104), as a plan
    could spell it: hex either case, base64 at each alignment, raw bytes."""
    secrets = [key, bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)]
    forms = []
    for secret in secrets:
        for i in range(len(secret) - 7):
            part = secret[i:i + 8]
            forms += [part.hex(), part.hex().upper(), part.decode("latin-1")]
        forms += [base64.b64encode(secret[i:]).decode()[:8] for i in range(3)]
    return forms


def _executions(store) -> dict:
    listed = store.executionsList()
    return {e.executionId(): e for e in (listed.apply(i) for i in range(listed.size()))}


def test_no_query_plan_of_the_ingest_holds_the_key(spark, cfg, tmp_path, monkeypatch):
    from microseg.tables import Tables

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("\n".join([HEADER, "C1,t1,2024-01-05,-1,EUR,groceries,1",
                                             "C2,t2,2024-01-05,-1,EUR,mystery,1"]) + "\n")
    written = []   # every DataFrame the ingest hands to a table write
    for method in ("merge_new", "replace_where"):
        monkeypatch.setattr(Tables, method, lambda self, key, df, *a, _write=getattr(Tables, method), **kw:
                            written.append(df) or _write(self, key, df, *a, **kw))
    store = spark._jsparkSession.sharedState().statusStore()   # what the Spark UI's SQL tab shows
    before = set(_executions(store))
    spark.conf.set("spark.sql.ui.explainMode", "extended")      # parsed, analysed, optimised, physical
    try:
        _, out = _ingest(spark, cfg, folder, monkeypatch)
    finally:
        spark.conf.unset("spark.sql.ui.explainMode")
    executed = [e.physicalPlanDescription() for i, e in _executions(store).items() if i not in before]
    explain = spark._jvm.PythonSQLUtils.explainString
    plans = executed + [explain(df._jdf.queryExecution(), mode) for df in written
                        for mode in ("extended", "formatted", "codegen")]
    assert out["rows_quarantined"] == 1 and len(written) == 2
    assert all("== Parsed Logical Plan ==" in p for p in executed)
    assert sum("hmac_sha256_hex" in p for p in plans) >= 6      # the pseudonymising plans are among them
    assert [form for form in _key_material(KEY.encode()) if any(form in p for p in plans)] == []


def test_the_quarantine_keeps_no_real_id_of_any_identifying_field(spark, cfg, tmp_path, monkeypatch):
    mapping = yaml.safe_load(Path("conf/sources/generated.yaml").read_text())
    (tmp_path / "mapping.yaml").write_text(yaml.safe_dump({**mapping, "identifying": ["counterparty"]}))
    folder = tmp_path / "in"
    folder.mkdir()
    header = HEADER + ",counterparty"
    (folder / "a.csv").write_bytes("\n".join([
        header, "C1,C1-001,2024-01-05,-1,EUR,groceries,1,IBAN1",
        "C2,C2-001,2024-01-05,-1,EUR,mystery,1,IBAN2",                   # unknown category
        "C1,C1-001,2024-01-06,-9,EUR,groceries,1,IBAN1",                 # duplicate transaction id
        '"C3,C3-001,2024-01-05,-1,EUR,groceries,1,IBAN3',                # malformed line
    ]).encode() + "\nZoë,Zoë-001,2024-01-05,-1,EUR,groceries,1,IBAN4\n".encode("latin-1"))   # bad encoding
    ctx, out = _ingest(spark, cfg, folder, monkeypatch, **{"source.mapping": str(tmp_path / "mapping.yaml")})
    assert out["quarantine_reasons"] == {"UNKNOWN_CATEGORY": 1, "DUPLICATE_TXN_ID": 1, "MALFORMED_LINE": 1,
                                         "BAD_ENCODING": 1}
    bronze = ctx.tables.read("transactions").collect()
    assert [(r.customer_id, r.txn_id) for r in bronze] == [(_hmac("C1"), _hmac("C1-001"))]
    rows = {r.reason: r for r in ctx.tables.read("quarantine").collect()}
    assert rows["MALFORMED_LINE"].raw_row == '"xx,xx-xxx,xxxx-xx-xx,-x,xxx,xxxxxxxxx,x,xxxxx'
    unknown = json.loads(rows["UNKNOWN_CATEGORY"].raw_row)
    assert unknown == {"customer_id": _hmac("C2"), "txn_id": _hmac("C2-001"), "booking_date": "2024-01-05",
                       "amount": "-1", "currency": "EUR", "category": "mystery", "balance_after": "1",
                       "counterparty": _hmac("IBAN2")}
    assert rows["UNKNOWN_CATEGORY"].txn_id == _hmac("C2-001")
    for row in rows.values():
        assert row.source_file.endswith("/in/a.csv")                   # the bank's own path stays
        for real in ("C1", "C2", "C3", "IBAN", "Zo"):
            assert real not in row.raw_row and real not in (row.txn_id or "")


def test_raw_rows_of_every_adapter_lose_their_identifying_fields(spark):
    rows = [("UNKNOWN_CATEGORY", '{"account_id":"77","trans_id":"9","account":"CZ-5","amount":"7"}'),
            ("MALFORMED_LINE", '{"account_id":"77","line":"9;77;930101;\\"PRIJEM\\""}'),   # Berka's broken line
            ("MISSING_CUSTOMER_ID", '{"account":null,"period":"2024-01","bills_paid":" "}')]   # a statement
    df = spark.createDataFrame(rows, "reason string, raw_row string")
    got = [json.loads(r.raw_row) if r.reason != "MALFORMED_LINE" else r.raw_row for r in
           pseudonymise_raw_rows(df, ["account_id", "trans_id", "account"], keyed_hmac(spark, KEY.encode())).collect()]
    assert got[0] == {"account_id": _hmac("77"), "trans_id": _hmac("9"), "account": _hmac("CZ-5"), "amount": "7"}
    assert got[1] == '{"xxxxxxx_xx":"xx","xxxx":"x;xx;xxxxxx;\\"xxxxxx\\""}'
    assert got[2] == {"account": None, "period": "2024-01", "bills_paid": " "}


def test_a_file_without_a_header_fails_without_showing_its_first_row(spark, cfg, tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text(f"{SENTINEL},t1,2024-01-05,-1,EUR,groceries,1\n")
    with pytest.raises(SourceError, match=r"a\.csv: required columns .* 7 column\(s\), none of them expected") as err:
        _ingest(spark, cfg, folder, monkeypatch)
    assert SENTINEL not in str(err.value)
