"""A corpus of bad input across the source adapters, the taxonomy and the config: each case
builds its files and expects either quarantine reasons with counts, or an error of a given
type whose message names the place (file, column, key).

Quarantine cases run the real ingest stage. The cases of one group (adapter + mapping)
share one run: each case's files lie in a folder of their own under the source path, and
its outcome is read back by ``source_file``. For every case the accounting holds: rows in
its files = rows inserted into bronze + rows quarantined (+ rows an earlier batch holds).
Error cases run alone and must stop before any table is written.
"""

from __future__ import annotations

import gzip
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from pyspark.sql import functions as F

from microseg import pipeline
from microseg.config import ConfigError, load_config
from microseg.prep.ingest import REASONS
from microseg.sources.contract import SourceError
from microseg.sources.files import check_files, list_files, load_mapping, read_files

ROOT = Path(__file__).resolve().parents[1]
TODAY = "2025-01-01"
H = "customer_id,txn_id,booking_date,amount,currency,category,balance_after"
CARD = "card_holder;auth_id;posted;amount;mcc"
STATEMENT = "account,period,closing_balance,payments_in,bills_paid"
BERKA = '"trans_id";"account_id";"date";"type";"operation";"amount";"balance";"k_symbol";"bank";"account"'


def text(*lines: str, end: str = "\n", sep: str = "\n", encoding: str = "utf-8") -> bytes:
    return (sep.join(lines) + end).encode(encoding)


def tx(txn: str, customer: str = "C1", date: str = "2024-01-05", amount: str = "-10.5", currency: str = "EUR",
       category: str = "groceries", balance: str = "100") -> str:
    """One line of the canonical CSV layout (conf/sources/generated.yaml)."""
    return ",".join((customer, txn, date, amount, currency, category, balance))


def berka(trans_id: str, date: str = "930101", kind: str = "PRIJEM", operation: str = "VKLAD",
          amount: str = "700.00", k_symbol: str = "") -> str:
    return f'{trans_id};2;{date};"{kind}";"{operation}";{amount};700.00;"{k_symbol}";;'


def parquet(rows: list[dict]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, pa.schema([(c, pa.string()) for c in H.split(",")])), sink)
    return sink.getvalue()


def _generated_as(fmt: str) -> dict:
    mapping = yaml.safe_load((ROOT / "conf/sources/generated.yaml").read_text())
    return {**mapping, "format": fmt, "options": {}}


@dataclass(frozen=True)
class Group:
    adapter: str
    mapping: str | dict          # a conf path, or a mapping written next to the files
    legs: int = 1                # canonical rows per source row (statements: 2)
    header: int = 1              # lines per text file that are not rows
    shared: bool = True          # False: the adapter reads one fixed file name, so one case per run
    overrides: dict = field(default_factory=dict)


GROUPS = {
    "csv": Group("files", "conf/sources/generated.yaml"),
    "json": Group("files", _generated_as("json"), header=0),
    "parquet": Group("files", _generated_as("parquet")),
    "mcc": Group("files", "conf/sources/card_mcc.yaml"),
    "statements": Group("statements", "conf/sources/statements.yaml", legs=2),
    "berka": Group("berka", "conf/sources/berka.yaml", shared=False, overrides={
        "ingest.currencies": ["CZK"], "ingest.date_window": {"start": "1993-01", "end": "1998-12"}}),
}


@dataclass(frozen=True)
class Case:
    id: str
    group: str
    files: dict[str, bytes]
    reasons: dict[str, int] = field(default_factory=dict)   # expected quarantine rows per reason
    valid: int = 0                    # rows expected valid (inserted, or already present)
    present: int = 0                  # of the valid rows: those an earlier batch inserted
    earlier: dict[str, bytes] = field(default_factory=dict)  # that earlier batch's files
    error: type[Exception] | None = None
    message: tuple[str, ...] = ()     # substrings the error message must hold
    conf: bytes | None = None         # an extra config layer (YAML)
    overrides: dict = field(default_factory=dict)   # "{dir}": the case's folder


QUARANTINE_CASES = [
    # --- CSV through the canonical mapping ----------------------------------------------------
    Case("csv-unclosed-quote", "csv", {"a.csv": text(H, tx("uq1"), '"C1,uq2,2024-01-05,-1,EUR,groceries,1',
                                                     tx("uq3"))},
         {"MALFORMED_LINE": 1}, valid=2),
    Case("csv-wrong-field-count", "csv", {"a.csv": text(
        H, tx("fc1") + ",surplus", "C1,fc2,2024-01-05", tx("fc3"))},
         {"MALFORMED_LINE": 2}, valid=1),
    Case("csv-truncated-final-line", "csv", {"a.csv": text(H, tx("tl1"), "C1,tl2,2024-01", end="")},
         {"MALFORMED_LINE": 1}, valid=1),
    Case("csv-types-do-not-parse", "csv", {"a.csv": text(
        H, tx("tp1", date="2024-13-45"), tx("tp2", date="05/01/2024"), tx("tp3", amount="12.5.3"),
        tx("tp4", amount='"1,5"'), tx("tp5", balance="n/a"), tx("tp6"))},
         {"UNPARSABLE_DATE": 2, "UNPARSABLE_AMOUNT": 2, "UNPARSABLE_BALANCE": 1}, valid=1),
    Case("csv-null-keys-and-required-fields", "csv", {"a.csv": text(
        H, tx("nk1", customer=""), tx("nk2", customer="   "), tx(""), tx("nk4", date=""), tx("nk5", amount=""),
        tx("nk6", balance=""))},
         {"MISSING_CUSTOMER_ID": 2, "MISSING_TXN_ID": 1, "MISSING_DATE": 1, "MISSING_AMOUNT": 1}, valid=1),
    Case("csv-absurd-and-non-finite-amounts", "csv", {"a.csv": text(
        H, tx("aa1", amount="-99999999999"), tx("aa2", amount="1e400"), tx("aa3", amount="NaN"),
        tx("aa4", amount="-9999999"), tx("aa5", amount="25.00"))},
         {"ABSURD_AMOUNT": 1, "MISSING_AMOUNT": 2}, valid=2),   # negative = debit, positive = credit: kept
    Case("csv-dates-in-the-future", "csv", {"a.csv": text(
        H, tx("fd1", date="2999-01-01"), tx("fd2", date="2025-01-02"), tx("fd3", date=TODAY))},
         {"DATE_IN_FUTURE": 2}, valid=1),
    Case("csv-dates-before-the-window", "csv", {"a.csv": text(
        H, tx("dw1", date="1999-12-31"), tx("dw2", date="0001-01-01"), tx("dw3", date="2000-01-01"))},
         {"DATE_OUT_OF_WINDOW": 2}, valid=1),
    Case("csv-unknown-currency", "csv", {"a.csv": text(
        H, tx("cu1", currency="XXX"), tx("cu2", currency="eur"), tx("cu3", currency=""), tx("cu4"))},
         {"UNKNOWN_CURRENCY": 3}, valid=1),
    Case("csv-unknown-category", "csv", {"a.csv": text(
        H, tx("uc1", category="mystery_shop"), tx("uc2", category="Groceries"), tx("uc3", category=""),
        tx("uc4"))},
         {"UNKNOWN_CATEGORY": 3}, valid=1),
    Case("csv-duplicate-ids-in-one-batch", "csv", {
        "a.csv": text(H, tx("dup1"), tx("dup1", amount="-99"), tx("dup2")),
        "b.csv": text(H, tx("dup2", date="2024-02-01"))},   # the same id in another file of the batch
         {"DUPLICATE_TXN_ID": 2}, valid=2),
    Case("csv-latin1-bytes", "csv", {"a.csv": text(
        H, tx("l1", customer="Zoë"), tx("l2", category="café"), tx("l3"), encoding="latin-1")},
         {"BAD_ENCODING": 2}, valid=1),   # never kept with a garbled id
    Case("csv-utf8-bom", "csv", {"a.csv": b"\xef\xbb\xbf" + text(H, tx("bom1"), tx("bom2"))}, valid=2),
    Case("csv-windows-line-ends", "csv", {"a.csv": text(H, tx("cr1"), tx("cr2"), sep="\r\n", end="\r\n")},
         valid=2),
    Case("csv-extra-columns-are-ignored", "csv", {"a.csv": text(
        H + ",branch,note", tx("ex1") + ",B7,hello", tx("ex2") + ",B7,")}, valid=2),
    Case("csv-columns-in-another-order", "csv", {"a.csv": text(   # files are read by column name
        "txn_id,amount,customer_id,booking_date,currency,category,balance_after",
        "co1,-1,C1,2024-01-05,EUR,groceries,1", "co2,oops,C1,2024-01-05,EUR,groceries,1")},
         {"UNPARSABLE_AMOUNT": 1}, valid=1),
    Case("csv-quoted-fields", "csv", {"a.csv": text(
        H, '"Doe, J",qd1,2024-01-05,"-1,000",EUR,groceries,1', '"Doe, J",qd2,2024-01-05,-3,EUR,groceries,1')},
         {"UNPARSABLE_AMOUNT": 1}, valid=1),   # a comma inside quotes is data; "-1,000" is no number
    Case("csv-header-only", "csv", {"a.csv": text(H)}),
    Case("csv-duplicate-ids-across-batches", "csv", {"a.csv": text(H, tx("xb1", amount="-11"), tx("xb3"))},
         valid=2, present=1, earlier={"a.csv": text(H, tx("xb1"), tx("xb2"))}),
    # --- JSON lines and Parquet through the same mapping ---------------------------------------
    Case("json-malformed-nested-and-null-values", "json", {"a.json": text(
        '{"customer_id":"C1","txn_id":"j1","booking_date":"2024-01-05","amount":-1.5,"currency":"EUR",'
        '"category":"groceries","balance_after":10}',
        '{"customer_id":"C1","txn_id":"j2","booking_date":"2024-01-05"',
        '{"customer_id":null,"txn_id":"j3","booking_date":"2024-01-05","amount":-1,"currency":"EUR",'
        '"category":"groceries"}',
        '{"customer_id":"C1","txn_id":"j4","booking_date":"2024-01-05","amount":{"v":1},"currency":"EUR",'
        '"category":"groceries"}')},
         {"MALFORMED_LINE": 1, "MISSING_CUSTOMER_ID": 1, "UNPARSABLE_AMOUNT": 1}, valid=1),
    Case("parquet-unparsable-and-null-values", "parquet", {"a.parquet": parquet([
        dict(zip(H.split(","), tx("p1").split(","))),
        {**dict(zip(H.split(","), tx("p2").split(","))), "amount": "abc"},
        {**dict(zip(H.split(","), tx("p3").split(","))), "txn_id": None},
        {**dict(zip(H.split(","), tx("p4").split(","))), "booking_date": "2024-02-30"}])},
         {"UNPARSABLE_AMOUNT": 1, "MISSING_TXN_ID": 1, "UNPARSABLE_DATE": 1}, valid=1),
    # --- card feed coded by MCC ---------------------------------------------------------------
    Case("mcc-codes-out-of-range-or-not-numeric", "mcc", {"a.csv": text(
        CARD, "C1;m1;05.01.2024;12.50;12345", "C1;m2;05.01.2024;1.00;-1", "C1;m3;05.01.2024;1.00;abc",
        "C1;m4;05.01.2024;1.00;", "C1;m5;05.01.2024;1.00;54.1", "C1;m6;05.01.2024;9.99;0742",
        "C1;m7;05.01.2024;3.00;5411")},
         {"UNKNOWN_CATEGORY": 5}, valid=2),
    Case("mcc-decimal-comma-and-iso-dates", "mcc", {"a.csv": text(
        CARD, "C1;md1;05.01.2024;12,50;5411", "C1;md2;2024-01-05;12.50;5411", "C1;md3;06.01.2024;-5.00;5411")},
         {"UNPARSABLE_AMOUNT": 1, "UNPARSABLE_DATE": 1}, valid=1),   # md3: a refund, kept as a credit
    # --- monthly statements: each row is two transactions -------------------------------------
    Case("statements-negative-totals", "statements", {"a.csv": text(
        STATEMENT, "S1,2024-01,1500,-200,500", "S1,2024-02,1500,200,-5", "S2,2024-01,-300,100,50")},
         {"NEGATIVE_AMOUNT": 4}, valid=2),   # a negative balance is an overdraft: kept
    Case("statements-duplicate-and-bad-months", "statements", {"a.csv": text(
        STATEMENT, "S3,2024-01,10,1,1", "S3,2024-01,20,2,2", "S3,2024-13,1,1,1", ",2024-01,1,1,1")},
         {"DUPLICATE_TXN_ID": 2, "UNPARSABLE_DATE": 2, "MISSING_CUSTOMER_ID": 2}, valid=2),
    # --- Berka (one trans.asc per folder) ------------------------------------------------------
    Case("berka-rules-types-signs-and-window", "berka", {"trans.asc": text(
        BERKA, berka("1"), berka("2", kind="XYZ"), berka("3", operation="NOVA"),
        berka("4", kind="VYDAJ", operation="PREVOD NA UCET", amount="-50.00"), berka("5", date="990105"),
        berka("1", date="930106", amount="5.00"), berka("7", date="931301"), sep="\r\n", end="\r\n")},
         {"UNKNOWN_CATEGORY": 2, "NEGATIVE_AMOUNT": 1, "DATE_OUT_OF_WINDOW": 1, "DUPLICATE_TXN_ID": 1,
          "UNPARSABLE_DATE": 1}, valid=1),
]

_TAXONOMY = (ROOT / "conf/taxonomy.yaml").read_text()
ERROR_CASES = [
    Case("csv-wrong-delimiter", "csv", {"semi.csv": text(H.replace(",", ";"), tx("w1").replace(",", ";"))},
         error=SourceError, message=("semi.csv", "'customer_id', 'txn_id', 'booking_date', 'amount'",
                                     "';'-separated")),
    Case("csv-utf16-file", "csv", {"wide.csv": text(H, tx("u1"), encoding="utf-16")},
         error=SourceError, message=("wide.csv", "not UTF-8 text", "UTF-16", "options.encoding")),
    Case("csv-missing-required-column", "csv", {"nodate.csv": text(
        "customer_id,txn_id,amount,currency,category,balance_after", "C1,t1,-1,EUR,groceries,1")},
         error=SourceError, message=("nodate.csv", "required column 'booking_date' missing")),
    Case("csv-missing-mapped-optional-column", "csv", {"nobalance.csv": text(
        "customer_id,txn_id,booking_date,amount,currency,category", "C1,t1,2024-01-05,-1,EUR,groceries")},
         error=SourceError, message=("nobalance.csv", "required column 'balance_after' missing")),
    Case("csv-duplicate-column-names", "csv", {"twice.csv": text(H + ",amount", tx("d1") + ",-2")},
         error=SourceError, message=("twice.csv", "required column 'amount' missing", "'amount3'")),
    Case("csv-empty-file", "csv", {"a.csv": text(H, tx("e1")), "empty.csv": b""},
         error=SourceError, message=("empty.csv", "file is empty")),
    Case("csv-mixed-formats-in-a-folder", "csv", {"a.csv": text(H, tx("mx1")), "b.json": b'{"txn_id": "x"}\n'},
         error=SourceError, message=("b.json", "not a csv file")),
    Case("csv-no-files", "csv", {}, error=SourceError, message=("no files at", "source.path")),
    Case("csv-mapping-file-missing", "csv", {"a.csv": text(H, tx("mm1"))},
         overrides={"source.mapping": "{dir}/nowhere.yaml"},
         error=ConfigError, message=("source.mapping", "nowhere.yaml", "does not exist")),
    Case("json-missing-key", "json", {"a.json": text(
        '{"customer_id":"C1","txn_id":"jk1","booking_date":"2024-01-05","currency":"EUR",'
        '"category":"groceries","balance_after":1}')},
         error=SourceError, message=("a.json", "required column 'amount' missing")),
    Case("parquet-not-parquet", "parquet", {"fake.parquet": text(H, tx("np1"))},
         error=SourceError, message=("fake.parquet", "not a Parquet file")),
    Case("statements-missing-column", "statements", {"s.csv": text(
        "account,period,closing_balance,payments_in", "S1,2024-01,1,1")},
         error=SourceError, message=("s.csv", "required column 'bills_paid' (mapped to bills) missing")),
    Case("berka-wrong-delimiter", "berka", {"trans.asc": text(BERKA, berka("1")).replace(b";", b",")},
         error=SourceError, message=("trans.asc", "lacks the required column(s)", "'trans_id'")),
    Case("taxonomy-class-missing-a-trait", "csv", {"taxonomy.yaml": _TAXONOMY.replace(
        "{name: pubs_bars,        kind: spend, big5: [ 0.2, -0.5,  0.8,  0.0,  0.1]}",
        "{name: pubs_bars,        kind: spend, big5: [ 0.2, -0.5,  0.8,  0.0]}").encode()},
         overrides={"taxonomy": "{dir}/taxonomy.yaml"},
         error=ConfigError, message=("taxonomy.yaml", "'pubs_bars'", "missing trait(s) ['neuroticism']")),
    Case("taxonomy-traits-list-missing-one", "csv", {"taxonomy.yaml": _TAXONOMY.replace(
        "traits: [openness, conscientiousness, extraversion, agreeableness, neuroticism]",
        "traits: [openness, conscientiousness, extraversion, neuroticism]").encode()},
         overrides={"taxonomy": "{dir}/taxonomy.yaml"},
         error=ConfigError, message=("taxonomy.yaml", "traits", "missing ['agreeableness']")),
    Case("config-wrong-type", "csv", {}, conf=b"ingest:\n  max_abs_amount: lots\n",
         error=ConfigError, message=("ingest.max_abs_amount", "valid number")),
    Case("config-scalar-for-a-list", "csv", {}, conf=b"ingest:\n  currencies: EUR\n",
         error=ConfigError, message=("ingest.currencies", "valid list")),
    Case("config-path-with-unknown-scheme", "csv", {},
         conf=b"train:\n  checkpoint_dir: ftp://bank.example/ckpt\n",
         error=ConfigError, message=("train.checkpoint_dir", "scheme 'ftp'")),
]
CASES = QUARANTINE_CASES + ERROR_CASES


def _write(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def _rows(case: Case) -> int:
    """Rows in the case's files, counted here (not by Spark): Parquet rows, else lines."""
    group, n = GROUPS[case.group], 0
    for name, data in case.files.items():
        if name.endswith(".parquet"):
            n += pq.read_metadata(io.BytesIO(data)).num_rows
        else:
            n += len([line for line in data.splitlines() if line.strip()]) - group.header
    return n * group.legs


def _config(root: Path, case: Case, path: Path):
    group = GROUPS[case.group]
    mapping = group.mapping
    if isinstance(mapping, dict):
        (root / "mapping.yaml").write_text(yaml.safe_dump(mapping))
        mapping = str(root / "mapping.yaml")
    layers = []
    if case.conf is not None:
        (root / "conf.yaml").write_bytes(case.conf)
        layers.append(root / "conf.yaml")
    overrides = {"tables.root": str(root / "lakehouse"), "source.loans": None, "source.adapter": group.adapter,
                 "source.mapping": mapping, "source.path": str(path), "ingest.today": TODAY, **group.overrides}
    overrides.update({k: v.replace("{dir}", str(path / case.id if group.shared else path))
                      for k, v in case.overrides.items()})
    return load_config("local", layers, overrides)


@dataclass
class Run:
    inserted: Counter        # case id -> rows this batch inserted into bronze
    quarantined: Counter     # (case id, reason) -> rows


def _ingest(spark, root: Path, cases: list[Case]) -> Run:
    """One ingest of the cases' files (after their earlier batches, if any)."""
    group = GROUPS[cases[0].group]
    source = root / "in"
    for case in cases:
        _write(source / case.id, case.files)
    path = source if group.shared else source / cases[0].id
    cfg = _config(root, cases[0], path)
    ctx = pipeline.Context.create(cfg, spark)
    if any(case.earlier for case in cases):
        for case in cases:
            _write(root / "earlier" / case.id, case.earlier)
        pipeline.run_stage("ingest", pipeline.Context.create(
            cfg.with_overrides(**{"source.path": str(root / "earlier")}), spark))
    out = pipeline.run_stage("ingest", ctx)

    def case_of(source_file: str) -> str:
        return Path(urlparse(source_file).path).relative_to(source).parts[0]

    this_batch = F.col("batch_id") == out["batch_id"]
    bronze = ctx.tables.read("transactions").where(this_batch).select("source_file").collect()
    quarantine = ctx.tables.read("quarantine").where(this_batch).select("source_file", "reason").collect()
    # the stage's own accounting, against rows counted from the files
    assert out["rows_read"] == sum(_rows(c) for c in cases) == out["rows_valid"] + out["rows_quarantined"]
    assert out["rows_already_present"] == sum(c.present for c in cases)
    return Run(Counter(case_of(r.source_file) for r in bronze),
               Counter((case_of(r.source_file), r.reason) for r in quarantine))


@pytest.fixture(scope="module")
def ingested(spark, tmp_path_factory):
    """case -> the Run that ingested it; cases of a shared group are ingested together, once."""
    runs: dict[str, Run] = {}

    def get(case: Case) -> Run:
        shared = GROUPS[case.group].shared
        key = case.group if shared else case.id
        if key not in runs:
            together = [c for c in QUARANTINE_CASES if c.group == key] if shared else [case]
            runs[key] = _ingest(spark, tmp_path_factory.mktemp(key), together)
        return runs[key]

    return get


def test_the_corpus_covers_every_reason_and_enough_kinds():
    reasons = {r for case in QUARANTINE_CASES for r in case.reasons}
    assert reasons == set(REASONS)
    assert len({c.id for c in CASES}) == len(CASES) >= 22
    assert {GROUPS[c.group].adapter for c in CASES} == {"files", "statements", "berka"}


@pytest.mark.parametrize("case", QUARANTINE_CASES, ids=lambda c: c.id)
def test_bad_rows_are_quarantined_with_their_reason_and_nothing_is_lost(case, ingested):
    run = ingested(case)
    reasons = {reason: n for (c, reason), n in run.quarantined.items() if c == case.id}
    assert reasons == case.reasons
    assert run.inserted[case.id] == case.valid - case.present
    assert _rows(case) == run.inserted[case.id] + sum(reasons.values()) + case.present


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.id)
def test_whole_file_config_and_taxonomy_errors_name_the_place_and_write_nothing(case, spark, tmp_path):
    group = GROUPS[case.group]
    folder = tmp_path / "in" / case.id
    _write(folder, case.files)
    ctx = None
    with pytest.raises(case.error) as err:
        ctx = pipeline.Context.create(_config(tmp_path, case, folder.parent if group.shared else folder), spark)
        pipeline.run_stage("ingest", ctx)
    for part in case.message:
        assert part in str(err.value)
    assert len(str(err.value)) < 1500                 # a message, not a stack trace
    if ctx is not None:
        assert not ctx.tables.exists("transactions") and not ctx.tables.exists("quarantine")


def test_the_encoding_option_the_messages_suggest_reads_latin1_plain_and_gzipped(spark, tmp_path):
    latin1 = H + ",région"                            # a header that is only right when decoded as Latin-1
    _write(tmp_path, {"a.csv": text(latin1, tx("e1", customer="Zoë") + ",Nord", encoding="latin-1"),
                      "b.csv.gz": gzip.compress(text(latin1, tx("e2", customer="Zoé") + ",Süd", encoding="latin-1"))})
    mapping = load_mapping(ROOT / "conf/sources/generated.yaml").model_copy(
        update={"options": {"sep": ",", "encoding": "ISO-8859-1"}})
    files = check_files(list_files(spark, str(tmp_path)), str(tmp_path), "csv")
    rows = read_files(spark, files, mapping).collect()
    assert sorted((r.customer_id, r.parse_error, json.loads(r.raw_row)["région"]) for r in rows) == [
        ("Zoé", None, "Süd"), ("Zoë", None, "Nord")]
