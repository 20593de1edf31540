"""Fixed costs on a small source: ~50,000 transactions (~100 customers) through the CLI
exactly as a new user runs it, one process per command, against DuckDB on the same files.

- ``microseg run --stage all``: the process's wall time, each stage's own seconds (the
  ``[stage] done in`` lines), and what is left over: interpreter, imports, Spark start-up;
- ``microseg run --stage ingest`` again in a process of its own: what one stage costs a
  user who runs stages one by one (the ingest finds every row already present);
- ``microseg report``: compare, evaluate and render on the same lakehouse (without the
  optional CoLES extra, whose one-time install is not part of a run);
- reference: DuckDB doing comparable preparation (``bench.prep.duckdb_reference``) on the
  same landing files, right after ours.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.prep import TODAY, TX_PER_CUSTOMER, duckdb_reference
from microseg.config import load_config

SCALES = {"small": 20_000, "full": 50_000}   # transactions
PREP = ("ingest", "aggregate", "labels", "personality", "sequences")
DONE = re.compile(r"\[(\w+)\] done in ([\d.]+) s")


def cli(args: list[str], overrides: dict[str, object]) -> tuple[float, dict[str, float]]:
    """Run ``python -m microseg *args`` with ``--set`` overrides; (wall seconds, stage seconds)."""
    sets = [x for key, value in overrides.items() for x in ("--set", f"{key}={json.dumps(value)}")]  # YAML
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "lib")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "microseg", *args, *sets], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"microseg {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    stages = {name: float(s) for name, s in DONE.findall(proc.stderr)}
    print(f"  microseg {' '.join(args):<22} {wall:8.1f} s  "
          + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()), flush=True)
    return wall, stages


def run(scale: str) -> dict[str, tuple[float, str]]:
    target = SCALES[scale]
    customers = max(1, round(target / TX_PER_CUSTOMER))
    with tempfile.TemporaryDirectory(prefix="microseg-bench-small-") as tmp:
        root = Path(tmp) / "lakehouse"
        overrides = {"tables.root": str(root), "generator.customers": customers, "ingest.today": TODAY}
        print(f"-- {customers} customers, ~{target:,} transactions", flush=True)
        all_wall, stages = cli(["run", "--stage", "all"], overrides)
        ingest_wall, again = cli(["run", "--stage", "ingest"], overrides)
        report_wall, report = cli(["report"], overrides)
        cfg = load_config("local", overrides=overrides)
        duckdb_s = duckdb_reference(cfg, Path(tmp) / "duckdb")
        rows = landing_rows(Path(cfg.data_path(cfg.source.path)))
    prep_s = sum(stages[s] for s in PREP)
    return {
        "small.transactions": (rows, "rows"),
        "small.customers": (customers, "customers"),
        "small.seconds_all_process": (all_wall, "s"),
        "small.seconds_start_up": (all_wall - sum(stages.values()), "s"),
        **{f"small.seconds_{name}": (s, "s") for name, s in stages.items()},
        "small.seconds_ingest_process": (ingest_wall, "s"),
        "small.seconds_ingest_stage_rerun": (again["ingest"], "s"),
        "small.seconds_report_process": (report_wall, "s"),
        **{f"small.seconds_report_{name}": (s, "s") for name, s in report.items()},
        "small.duckdb_seconds_prep": (duckdb_s, "s"),
        "small.ratio_prep_vs_duckdb": (duckdb_s / prep_s, "ratio"),
    }


def landing_rows(folder: Path) -> int:
    """Records in the landing CSV files (lines less each file's header)."""
    return sum(sum(1 for _ in f.open()) - 1 for f in folder.rglob("*.csv"))
