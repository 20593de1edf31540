"""The whole flow at scale, as a scheduled job would run it: wall time per stage and peak
memory (the driver's Python process, and the whole process tree: Python, the JVM, its
Python workers and the training ranks), sampled every half second.

Not part of the default ``make bench``: ``make bench ARGS="--only scale"`` runs
``SIZES[scale]`` customers x 24 months (``MICROSEG_SCALE_CUSTOMERS`` overrides), with 3
training epochs; ``MICROSEG_SCALE_EVALUATE=1`` adds the report's compare and evaluate
stages (evaluate on its bounded sample). ``MICROSEG_SCALE_ROOT`` keeps the lakehouse in
that folder and runs the flow with ``--resume``: the same command again, after an
interruption, continues after the last completed stage. Each command's figures go to a
ledger in that folder (``LEDGER``) as each stage completes, and the figures recorded are
the ledger's: each stage's seconds from the command that ran it, the wall time summed over
the commands (each counted up to its last completed stage or its end), the peaks the
largest any command saw. A flat driver RSS across sizes is the check that nothing is
collected to the driver.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from microseg.tracking import code_version

SIZES = {"small": 5_000, "full": 100_000}
LEDGER = "bench-scale-ledger.json"
DONE = re.compile(r"^\[(\w+)\] done in ([\d.]+) s")
ROWS = re.compile(r"stage ingest done in .*'rows_read': (\d+)")
STAGES = ["generate", "ingest", "aggregate", "labels", "personality", "sequences", "train", "embed", "segment",
          "summary"]


def _watch(proc: subprocess.Popen, peaks: dict[str, float], stop: threading.Event) -> None:
    root = psutil.Process(proc.pid)
    while not stop.is_set():
        try:
            tree = [root, *root.children(recursive=True)]
            total = sum(p.memory_info().rss for p in tree if p.is_running())
            peaks["tree"] = max(peaks["tree"], total)
            peaks["driver"] = max(peaks["driver"], root.memory_info().rss)
        except psutil.Error:
            pass
        stop.wait(0.5)


def run(scale: str) -> dict[str, tuple[float, str]]:
    customers = int(os.environ.get("MICROSEG_SCALE_CUSTOMERS", SIZES[scale]))
    root = os.environ.get("MICROSEG_SCALE_ROOT") or tempfile.mkdtemp(prefix="microseg-scale-")
    stages = STAGES + (["compare", "evaluate"] if os.environ.get("MICROSEG_SCALE_EVALUATE") == "1" else [])
    partitions = max(8, customers // 12_500)
    cmd = [sys.executable, "-m", "microseg", "run", "--stage", "all", "--progress-every", "0",
           "--set", f"tables.root={root}", "--set", f"generator.customers={customers}",
           "--set", f"generator.partitions={partitions}", "--set", f"spark.shuffle_partitions={partitions}",
           "--set", "model.epochs=3", "--set", "segment.coarse_k_grid=[3,4,6]",
           # a full GC every 5 minutes (Spark's default: 30) lets Spark delete the shuffle files
           # of finished stages sooner: at 1M customers generate's alone are over 20 GB
           "--set", 'spark.conf={"spark.cleaner.periodicGC.interval": "5min"}',
           "--set", f"stages=[{', '.join(stages)}]"] + (["--resume"] if os.environ.get("MICROSEG_SCALE_ROOT") else [])
    ledger = Path(root) / LEDGER
    runs = json.loads(ledger.read_text()) if ledger.exists() else []
    mine = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "commit": code_version(), "wall": 0.0,
            "seconds": {}, "transactions": 0, "peaks": {"tree": 0.0, "driver": 0.0}}
    runs.append(mine)
    peaks = mine["peaks"]
    stop = threading.Event()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    watcher = threading.Thread(target=_watch, args=(proc, peaks, stop), daemon=True)
    watcher.start()
    for line in proc.stderr:
        if m := DONE.match(line):
            mine["seconds"][m.group(1)] = float(m.group(2))
            print(f"  {m.group(1):12s} {float(m.group(2)):8.1f} s", flush=True)
        elif m := ROWS.search(line):
            mine["transactions"] = int(m.group(1))
        else:
            continue
        mine["wall"] = time.perf_counter() - start
        ledger.write_text(json.dumps(runs, indent=1))   # an interrupted command keeps what it completed
    code = proc.wait()
    stop.set()
    mine["wall"] = time.perf_counter() - start
    ledger.write_text(json.dumps(runs, indent=1))
    if code:
        raise RuntimeError(f"the flow failed (exit {code}) at {customers} customers; lakehouse left in {root}")
    seconds = {name: s for run in runs for name, s in run["seconds"].items()}   # the latest run of each stage
    wall = sum(run["wall"] for run in runs)
    tree, driver = (max(run["peaks"][k] for run in runs) for k in ("tree", "driver"))
    transactions = max(run["transactions"] for run in runs)
    print(f"  {customers} customers: {wall:.0f} s wall in {len(runs)} command(s), peak RSS {tree / 2**30:.1f} GiB "
          f"(driver Python {driver / 2**30:.2f} GiB); lakehouse {root}", flush=True)
    size = sum(f.stat().st_size for f in Path(root).rglob("*") if f.is_file())
    out = {f"scale.{name}.seconds": (s, "s") for name, s in seconds.items()}
    out.update({"scale.customers": (customers, "customers"), "scale.wall_seconds": (wall, "s"),
                "scale.commands": (len(runs), "commands"),
                "scale.stages_seconds": (sum(seconds.values()), "s"),
                "scale.lakehouse_gib": (size / 2**30, "GiB"),
                **({"scale.transactions": (transactions, "rows")} if transactions else {}),
                "scale.peak_rss_gib": (tree / 2**30, "GiB"),
                "scale.driver_python_peak_rss_gib": (driver / 2**30, "GiB")})
    return out
