"""The README's "Bringing your own data", followed on a small export in a layout the project
does not ship: the mapping and the config layer are the README's own YAML blocks, written
as they stand, and the commands are the README's, run through the CLI in that order."""

from __future__ import annotations

import datetime as dt
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from microseg.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Bringing your own data"
# Scaled down for a test, on top of the README's commands: the walk-through is unchanged
FAST = {"spark.shuffle_partitions": 4, "model.hidden": 8, "model.epochs": 2,
        "segment.coarse_k_grid": "[2, 3]", "segment.micro_k_grid": "[2, 3]",
        "evaluate.objectives": "[profile]", "evaluate.objective_seeds": 1, "evaluate.objective_epochs": 2,
        "evaluate.e2e_epochs": 1, "evaluate.cv_folds": 3, "evaluate.cv_repeats": 1,
        "evaluate.gbm_iterations": 10, "evaluate.variants": "[lstm, traits]"}
# The export's segments: what each kind of customer spends on, by the bank's codes
MIXES = {"night_out": {"KNE": 4, "RES": 3, "KIN": 2, "SPI": 1, "LEB": 2},
         "home": {"LEB": 5, "STR": 1, "BUC": 2, "FIT": 2, "SPE": 1},
         "travel": {"REI": 2, "HOT": 2, "RES": 2, "LEB": 3, "BUC": 1}}
MONTHS = 15   # 2023-01 .. 2024-03
BAD = {"UNKNOWN_CATEGORY": 2, "UNPARSABLE_DATE": 1}


def readme_section() -> str:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:end if end > 0 else None]


def files_and_commands(section: str) -> tuple[dict[str, str], list[list[str]]]:
    """The section's YAML blocks by the file name on their first line (``# name``), and the
    ``microseg`` commands of its shell blocks, in order."""
    files, commands = {}, []
    for lang, body in re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S):
        if lang == "yaml":
            name = body.splitlines()[0].lstrip("# ").strip()
            files[name] = body
        elif lang == "sh":
            commands += [shlex.split(line)[1:] for line in body.splitlines() if line.startswith("microseg ")]
    return files, commands


def write_export(folder: Path, seed: int = 3) -> tuple[int, int]:
    """The ledger in its own layout, a loan book and the pilot's known segments; returns
    (ledger rows, customers)."""
    rng = np.random.default_rng(seed)
    ledger, loans, known = folder / "ledger", [], []
    ledger.mkdir(parents=True)
    rows = []
    customers = [f"K{n:04d}" for n in range(90)]
    for n, cid in enumerate(customers):
        kind = list(MIXES)[n % len(MIXES)]
        known.append(f"{cid},{kind}")
        codes, weights = zip(*MIXES[kind].items())
        p = np.array(weights, float) / sum(weights)
        balance, txn = float(rng.uniform(500, 3000)), 0
        for m in range(MONTHS):
            first = dt.date(2023 + m // 12, m % 12 + 1, 1)
            booked = [(first, 2500 + rng.normal(0, 200), "GEH"), (first + dt.timedelta(days=2), -900.0, "MIE")]
            for _ in range(rng.integers(6, 12)):
                day = first + dt.timedelta(days=int(rng.integers(3, 28)))
                booked.append((day, -float(rng.lognormal(3.5, 0.6)), str(rng.choice(codes, p=p))))
            for day, amount, code in sorted(booked):
                balance += amount
                txn += 1
                rows.append(f"{cid};{cid}-{txn};{day:%d.%m.%Y};{amount:.2f};EUR;{code};{balance:.2f}")
        if n % 2 == 0:   # every other customer borrowed in the second half of 2023
            bad = kind == "night_out" and rng.random() < 0.7 or rng.random() < 0.1
            loans.append(f"{cid},{'DEFAULTED' if bad else 'CURRENT'},2023-{7 + n % 4:02d}-15")
    for at, field, value in ((5, 5, "XYZ"), (40, 5, "QQQ"), (77, 2, "2023-13-45")):   # BAD: codes, a date
        fields = rows[at].split(";")
        fields[field] = value
        rows[at] = ";".join(fields)
    header = "Kunde;Buchung;Datum;Betrag;Waehrung;Kategorie;Saldo"
    half = len(rows) // 2
    (ledger / "2023.csv").write_text("\n".join([header, *rows[:half]]) + "\n")
    (ledger / "2024.csv").write_text("\n".join([header, *rows[half:]]) + "\n")
    (folder / "loans.csv").write_text("\n".join(["customer_id,loan_status,loan_date", *loans]) + "\n")
    (folder / "pilot-segments.csv").write_text("\n".join(["customer,segment", *known]) + "\n")
    return len(rows), len(customers)


@pytest.fixture(scope="module")
def walked(spark, tmp_path_factory):
    """The walk-through, in a fresh folder: its files written, its commands run in order."""
    folder = tmp_path_factory.mktemp("mybank")
    files, commands = files_and_commands(readme_section())
    for name, body in files.items():
        (folder / name).write_text(body)
    rows, customers = write_export(folder / "exports")
    runner, results = CliRunner(), []
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        for args in commands:
            fast = [x for key, value in FAST.items() for x in ("--set", f"{key}={value}")]
            result = runner.invoke(app, [*args, *fast, "--progress-every", "0"] if args[0] != "status"
                                   else [*args, *fast])
            results.append((args, result))
            assert result.exit_code == 0, (args, result.output)
    return folder, files, commands, results, rows, customers


def lakehouse(folder: Path, spark):
    from microseg.config import load_config
    from microseg.pipeline import Context

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        cfg = load_config("local", files=[folder / "mybank.yaml"])
        return Context.create(cfg.with_overrides(**{"tables.root": str(folder / cfg.tables.root)}), spark)


def test_the_section_has_a_mapping_a_layer_and_the_commands_in_order(walked):
    _, files, commands, _, _, _ = walked
    assert set(files) == {"mybank-ledger.yaml", "mybank.yaml"}
    assert [c[:3] for c in commands] == [["run", "--conf", "mybank.yaml"], ["status", "--conf", "mybank.yaml"],
                                         ["run", "--conf", "mybank.yaml"], ["report", "--conf", "mybank.yaml"]]


def test_every_row_is_kept_or_quarantined_and_nothing_synthetic_is_written(walked, spark):
    folder, _, _, _, rows, _ = walked
    ctx = lakehouse(folder, spark)
    assert not ctx.tables.exists("ground_truth")
    assert not (folder / "lakehouse-mybank" / "landing").exists()
    kept, quarantined = ctx.tables.read("transactions").count(), ctx.tables.read("quarantine")
    reasons = {r["reason"]: r["count"] for r in quarantined.groupBy("reason").count().collect()}
    assert reasons == BAD
    assert kept + sum(reasons.values()) == rows


def test_the_flow_builds_segments_for_every_eligible_customer(walked, spark):
    folder, *_ = walked
    ctx = lakehouse(folder, spark)
    eligible = ctx.tables.read("sequences").where("eligible").count()
    segmented = ctx.tables.read("segments").select("customer_id").distinct().count()
    assert eligible > 60 and segmented >= eligible
    labels = ctx.tables.read("labels")
    assert labels.where("loan_default IS NOT NULL").count() == 45   # every other customer borrowed
    assert labels.where("liquidity_index IS NULL").count() < labels.count()


def test_the_report_judges_against_the_known_segments(walked):
    import json

    folder, *_ = walked
    [path] = list((folder / "lakehouse-mybank" / "reports").glob("*/evaluation.json"))
    meta = json.loads(path.read_text())["meta"]
    assert meta["ground_truth"].endswith("pilot-segments.csv")
    assert meta["customers_with_known_segment"] == meta["customers_in_sample"]
    assert "structure" not in meta["not_evaluated"] and "liquidity" not in meta["not_evaluated"]
    assert (path.parent / "report.html").is_file()
