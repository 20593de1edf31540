"""The Berka adapter on the real PKDD'99 sample, and on broken copies of its files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from microseg.config import ConfigError, load_config
from microseg.prep import aggregate, reference
from microseg.prep.ingest import validate
from microseg.sources import registry
from microseg.sources.berka import load_files, load_mapping, read_loans, read_transactions
from microseg.sources.contract import CANONICAL, SourceError

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "berka-sample"
MAPPING = Path(__file__).resolve().parents[1] / "conf" / "sources" / "berka.yaml"



def _rows(name: str) -> list[list[str]]:
    """A sample file split by hand (header first), quotes removed: the test's own reading."""
    lines = (SAMPLE / name).read_text().splitlines()
    return [[f.strip('"') for f in line.split(";")] for line in lines if line]


@pytest.fixture
def classes(ctx):
    return [c.name for c in ctx.taxonomy.classes]


@pytest.fixture
def mapping(classes):
    return load_mapping(MAPPING, classes)


def _trans_copy(tmp_path: Path, lines: list[str], header: str | None = None) -> Path:
    """A folder holding a trans.asc of the sample's header (or ``header``) and ``lines``."""
    header = header if header is not None else (SAMPLE / "trans.asc").read_text().splitlines()[0]
    (tmp_path / "trans.asc").write_text("\r\n".join([header, *lines]) + "\r\n")
    return tmp_path


def test_sample_reads_every_transaction_into_a_taxonomy_class(spark, mapping, classes):
    tx = read_transactions(spark, SAMPLE, mapping)
    assert [(f.name, f.dataType) for f in tx.schema] == [(f.name, f.dataType) for f in CANONICAL]
    stats = tx.agg(
        F.count("*").alias("n"),
        F.sum(F.col("category").isin(classes).cast("int")).alias("classified"),
        F.sum(F.col("parse_error").isNull().cast("int")).alias("clean"),
        F.sum((F.col("currency") == "CZK").cast("int")).alias("czk"),
        F.min("booking_date").alias("first"),
        F.max("booking_date").alias("last"),
        F.countDistinct("customer_id").alias("accounts"),
    ).first()
    assert stats.n == stats.classified == stats.clean == stats.czk == 5907
    assert (stats.first.year, stats.first.month) == (1993, 1)
    assert (stats.last.year, stats.last.month) == (1994, 3)
    assert stats.accounts == 60


def test_signs_dates_and_classes_match_the_raw_file(spark, mapping):
    header, *body = _rows("trans.asc")
    raw = {r[0]: dict(zip(header, r)) for r in body}
    pick = {
        "credit": next(r for r in raw.values() if r["type"] == "PRIJEM"),
        "cash": next(r for r in raw.values() if r["type"] == "VYBER"),
        "debit": next(r for r in raw.values() if r["type"] == "VYDAJ"),
        "interest": next(r for r in raw.values() if r["k_symbol"] == "UROK"),
        "blank": next(r for r in raw.values() if r["k_symbol"] == " " and r["operation"] == "PREVOD NA UCET"),
    }
    ids = [r["trans_id"] for r in pick.values()]
    tx = read_transactions(spark, SAMPLE, mapping).where(F.col("txn_id").isin(ids))
    got = {r.txn_id: r for r in tx.collect()}
    for kind, want in pick.items():
        row = got[want["trans_id"]]
        sign = 1 if kind in ("credit", "interest") else -1
        assert row.amount == sign * float(want["amount"]) and abs(row.amount) > 0, kind
        assert row.balance_after == float(want["balance"])
        assert row.customer_id == want["account_id"]
        d = want["date"]
        assert row.booking_date == dt.date(1900 + int(d[:2]), int(d[2:4]), int(d[4:]))
        assert json.loads(row.raw_row)["amount"] == want["amount"]
        assert row.source_file.endswith("trans.asc")
    assert got[pick["cash"]["trans_id"]].category == "cash_withdrawal"
    assert got[pick["interest"]["trans_id"]].category == "interest"
    # k_symbol " " counts as none: the purpose-less remittance rule applies
    blank = got[pick["blank"]["trans_id"]]
    assert (blank.category, blank.raw_category) == ("mortgage_rent", "VYDAJ|PREVOD NA UCET|")


def test_mapping_rejects_a_class_outside_the_taxonomy(tmp_path, classes):
    bad = tmp_path / "berka.yaml"
    bad.write_text(MAPPING.read_text().replace("txn_class: utilities", "txn_class: household"))
    with pytest.raises(ConfigError, match=r"rule \d+ \(any\|any\|SIPO\).*'household'"):
        load_mapping(bad, classes)


def test_loans_become_default_labels(spark, mapping):
    _, *body = _rows("loan.asc")
    accounts = {r[0] for r in _rows("account.asc")[1:]}
    expected = {r[0]: r[-1] for r in body if r[1] in accounts}
    loans = {r.loan_id: r for r in read_loans(spark, SAMPLE, mapping.files).collect()}
    assert len(loans) == len(expected) == 19
    assert {k: v.loan_status for k, v in loans.items()} == expected
    assert all(v.loan_default == (1 if v.loan_status in ("B", "D") else 0) for v in loans.values())
    assert sum(v.loan_default for v in loans.values()) == 4
    first = loans["5316"]
    assert (first.customer_id, first.loan_date, first.loan_amount, first.duration_months) == (
        "1801", dt.date(1993, 7, 11), 165960.0, 36)


def test_the_loan_date_is_each_loan_accounts_reference(spark, mapping, classes, tmp_path):
    """conf/berka.yaml: an account with a loan granted by the run's month is read up to that
    month; every other account up to the run's month (the sample's last, 1994-03)."""
    cfg = load_config("berka", overrides={"tables.root": str(tmp_path)})
    assert cfg.sequences.reference == "loan_date"
    tx, _ = validate(read_transactions(spark, SAMPLE, mapping), "berka", "b", cfg.ingest, classes,
                     dt.date(2000, 1, 1))
    account = aggregate.monthly_account(tx)
    as_of = reference.run_month(account, cfg.sequences.as_of)
    dates = reference.reference_dates(cfg.sequences.reference, registry.read_loans(spark, cfg))
    got = {r.customer_id: r.reference_month
           for r in reference.customer_references(account, dates, as_of).collect()}
    granted = {r[1]: dt.date(1900 + int(r[2][:2]), int(r[2][2:4]), 1) for r in _rows("loan.asc")[1:]}
    assert as_of == dt.date(1994, 3, 1) and len(got) == 60
    assert got == {c: min(granted.get(c, as_of), as_of) for c in got}   # a later loan: read at as_of
    assert got["1801"] == dt.date(1993, 7, 1)                  # loan 5316, granted 1993-07-11
    assert sum(m < as_of for m in got.values()) == 7           # the loans granted before 1994-03


def test_the_loan_book_is_the_file_the_mapping_names(spark, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    for name in ("trans.asc", "loan.asc"):
        (folder / ("loans.csv" if name == "loan.asc" else name)).write_bytes((SAMPLE / name).read_bytes())
    renamed = tmp_path / "berka.yaml"
    renamed.write_text(MAPPING.read_text().replace("loans: loan.asc", "loans: loans.csv"))
    cfg = load_config("berka", overrides={"tables.root": str(tmp_path / "lakehouse"), "source.path": str(folder),
                                          "source.mapping": str(renamed)})
    loans = registry.read_loans(spark, cfg)
    stats = loans.agg(F.count("*").alias("n"), F.sum("loan_default").alias("defaults")).first()
    assert (stats.n, stats.defaults) == (19, 4)          # the sample's loans, 4 of them B or D


def test_a_mapping_key_that_nothing_reads_fails_at_load_naming_it(tmp_path):
    bad = tmp_path / "berka.yaml"
    bad.write_text(MAPPING.read_text().replace("  loans: loan.asc", "  loans: loan.asc\n  clients: client.asc"))
    with pytest.raises(ConfigError, match=r"files\.clients: not a key here, so nothing would read it; remove it "
                                          r"\(keys here: transactions, loans\)"):
        load_files(bad)


def test_a_missing_column_names_file_and_column(spark, mapping, tmp_path):
    header = '"trans_id";"account_id";"day";"type";"operation";"amount";"balance";"k_symbol";"bank";"account"'
    folder = _trans_copy(tmp_path, ['1;2;930101;"PRIJEM";"VKLAD";700.00;700.00;"";;'], header)
    with pytest.raises(SourceError, match=r"trans\.asc.*\['date'\]"):
        read_transactions(spark, folder, mapping)


def test_an_empty_or_missing_file_is_an_error(spark, mapping, tmp_path):
    (tmp_path / "trans.asc").write_text("")
    with pytest.raises(SourceError, match=r"trans\.asc is empty"):
        read_transactions(spark, tmp_path, mapping)
    with pytest.raises(SourceError, match=r"loan\.asc does not exist"):
        read_loans(spark, tmp_path, mapping.files)


def test_bad_lines_get_a_reason_and_keep_their_raw_row(spark, mapping, tmp_path):
    folder = _trans_copy(tmp_path, [
        '1;2;930101;"PRIJEM";"VKLAD";700.00;700.00;"";;',      # good
        '2;2;931301;"PRIJEM";"VKLAD";700.00;700.00;"";;',      # month 13
        '3;2;930230;"PRIJEM";"VKLAD";700.00;700.00;"";;',      # 30 February
        '4;2;930101;"PRIJEM";"VKLAD";7OO.00;700.00;"";;',      # letters O in the amount
        '5;2;930101;"PRIJEM";"VKLAD";700.00;;"";;',            # no balance
        '6;2;930101;"PRIJEM";"VKLAD"',                         # too few fields
    ])
    got = {r.txn_id: r for r in read_transactions(spark, folder, mapping).collect()}
    assert {k: v.parse_error for k, v in got.items()} == {
        "1": None, "2": "UNPARSABLE_DATE", "3": "UNPARSABLE_DATE", "4": "UNPARSABLE_AMOUNT",
        "5": "UNPARSABLE_BALANCE", "6": "MALFORMED_LINE"}
    assert got["2"].booking_date is None and json.loads(got["2"].raw_row)["date"] == "931301"
    assert got["4"].amount is None and json.loads(got["4"].raw_row)["amount"] == "7OO.00"
    short = json.loads(got["6"].raw_row)
    assert short["line"] == '6;2;930101;"PRIJEM";"VKLAD"' and short["type"] == "PRIJEM"
    assert got["1"].amount == 700.0 and got["1"].category == "transfer_in"
