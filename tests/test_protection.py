"""Customer data protection: no raw transaction row in logs or printed output, the
pseudonym key never shown, and the key read from the environment or a secret scope only."""

import logging

import pytest

from microseg import pipeline
from microseg.config import ConfigError
from microseg.prep.pseudonymise import pseudonym_key

KEY = "pseudonym-key-" + "7Qx9" * 4
SENTINEL = "SENTINEL_XYZ_4711"
HEADER = "customer_id,txn_id,booking_date,amount,currency,category,balance_after"


def test_ingest_logs_and_prints_no_raw_row_and_no_key(spark, cfg, tmp_path, caplog, capsys, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("\n".join([
        HEADER, "C1,t1,2024-01-05,-1,EUR,groceries,1",
        f"C1,t2,2024-01-05,-1,EUR,{SENTINEL},1",                        # unknown category
        f'"{SENTINEL}_CUSTOMER,t3,2024-01-05,-1,EUR,groceries,1',       # malformed line
    ]) + "\n")
    monkeypatch.setenv("MICROSEG_PSEUDONYM_KEY", KEY)
    run_cfg = cfg.with_overrides(**{"source.path": str(folder), "source.loans": None, "ingest.today": "2025-01-01",
                                    "ingest.pseudonymise": True})
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="py4j")   # its DEBUG echoes every JVM call: slow, and no rows
    ctx = pipeline.Context.create(run_cfg, spark)
    out = pipeline.run_stage("ingest", ctx)
    printed = capsys.readouterr()
    assert out["quarantine_reasons"] == {"UNKNOWN_CATEGORY": 1, "MALFORMED_LINE": 1}
    assert all(SENTINEL in r.raw_row for r in ctx.tables.read("quarantine").collect())   # kept there, verbatim
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
