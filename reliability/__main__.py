"""``python -m reliability [--trials N] [--concurrent N] [--seed S] [--root DIR]``

Builds a small lakehouse stage by stage (snapshotting it before each stage under trial),
then runs the trials: each of ``--trials`` restores a stage's snapshot, starts the stage
as a process, SIGKILLs it at a random moment of its write phase, checks that readers see
each output table either as before or as after a clean run (never in between, never with
duplicates), re-runs the stage and compares every output with the clean run's; for
``train`` (TorchDistributor, 2 ranks) the kill lands mid-epoch after a checkpoint, and the
re-run must resume from it and log the clean run's weights bit for bit; each of
``--concurrent`` runs two ingests of different files into the same tables at once and
compares them with the same ingests run one after the other. It ends with one line:
``reliability: <survived>/<trials> trials survived, <lost> rows lost``; the details go to
``--out`` (JSON) and the stages' logs under ``--root``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from reliability import process, trials
from reliability.lakehouse import Lakehouse

KILL_STAGES = ["ingest", "aggregate", "sequences", "train", "embed", "segment"]

# 300 customers x 12 months: about 72,000 transactions and 400 rejected rows
OVERRIDES = {
    "spark.shuffle_partitions": 4,
    "generator.customers": 300,
    "generator.months": 12,
    "generator.partitions": 2,
    "generator.bad_rows": {"UNPARSABLE_AMOUNT": 0.002, "MISSING_CUSTOMER_ID": 0.002},
    "ingest.today": "2024-06-30",
    "sequences.reference": "as_of",       # 12 months leave no room for a loan's 6 + 6 months
    "sequences.window_months": 12,
    "sequences.min_months": 4,
    "model.epochs": 4,
    "model.steps_per_epoch": 30,          # epochs of a second or more: room for a kill inside one
    "model.hidden": 8,
    "train.launcher": "torch_distributor",
    "train.num_processes": 2,
    "segment.k": 4,
    "segment.coarse_k": 2,
}

MONTHS = "{root}/landing/transactions/month=2023-"   # the generator's landing, one folder a month
FIRST_HALF = MONTHS + "0[1-6]"
CONCURRENT = [  # name, snapshot to start from, the two ingests' files
    ("into new tables", "generated", (FIRST_HALF, MONTHS + "{0[7-9],1[0-2]}")),
    ("into existing tables", "ingest", (MONTHS + "0[7-9]", MONTHS + "1[0-2]")),
]
MARKER = ".microseg-reliability"


def prepare(root: Path) -> None:
    """An empty work folder; one left by an earlier harness run is wiped, nothing else is."""
    if root.exists():
        if not (root / MARKER).exists():
            raise SystemExit(f"{root} exists and is not a reliability work folder; choose another --root")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / MARKER).touch()


def build(lake: Lakehouse) -> dict[str, trials.CleanRun | trials.CleanTraining]:
    """generate, the first half-year into bronze, then the rest of the flow; each stage
    under trial runs clean once from its snapshot, timed and fingerprinted (train: its epochs
    timed, its logged weights digested)."""
    clean = {}
    lake.run("generate", "generate")
    lake.snapshot("generated")
    lake.run("ingest", "ingest-first-half", **{"source.path": FIRST_HALF})
    for stage in ["ingest", "aggregate", "labels", "personality", "sequences", "train", "embed", "segment"]:
        if stage == "train":
            clean[stage] = c = trials.clean_training(lake)
            print(f"clean train: {c.seconds:.0f} s, {len(c.saves)} epochs of {c.epoch_s:.1f} s, "
                  f"checkpoints from {c.saves[0]:.1f} s", flush=True)
        elif stage in KILL_STAGES:
            clean[stage] = c = trials.clean_run(lake, stage)
            print(f"clean {stage}: {c.seconds:.0f} s, writes from {c.first_write:.1f} s to {c.last_write:.1f} s; "
                  + " ".join(f"{k}={fp.rows}" for k, fp in c.after.items()), flush=True)
        else:
            lake.run(stage, stage)
    return clean


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m reliability", description=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=24, help="SIGKILL trials, spread over the stages")
    parser.add_argument("--concurrent", type=int, default=3, help="trials of two ingests at once")
    parser.add_argument("--seed", type=int, default=7, help="seeds the kill times")
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "microseg-reliability",
                        help="work folder: lakehouse, snapshots, logs (wiped at start)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results.json",
                        help="the summary and every trial, as JSON")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # so that `finally` stops the stages
    try:
        run(args)
    finally:
        process.stop_all()


def run(args: argparse.Namespace) -> None:
    start = time.monotonic()
    os.environ.setdefault("MICROSEG_DRIVER_MEMORY", "2g")   # each stage's JVM; the data is small
    prepare(args.root)
    lake = Lakehouse(args.root, OVERRIDES)
    clean = build(lake)
    cases = [trials.concurrent_reference(lake, *case) for case in CONCURRENT]
    print(f"lakehouse built in {time.monotonic() - start:.0f} s under {args.root}", flush=True)

    rng = random.Random(args.seed)
    total = args.trials + args.concurrent
    results = []
    for n in range(1, total + 1):
        if n <= args.trials:
            stage = KILL_STAGES[(n - 1) % len(KILL_STAGES)]
            kill = trials.training_kill_trial if stage == "train" else trials.kill_trial
            trial = kill(lake, clean[stage], rng, n)
        else:
            trial = trials.concurrent_trial(lake, cases[(n - args.trials - 1) % len(cases)], n)
        results.append(trial)
        print(trial.line(n, total), flush=True)

    survived = sum(t.survived for t in results)
    lost = sum(t.rows_lost for t in results)
    kills = sum(t.killed for t in results)
    summary = {
        "trials": total, "survived": survived, "rows_lost": lost, "kills_landed": kills, "seed": args.seed,
        "wall_s": round(time.monotonic() - start), "config": OVERRIDES,
        "clean_runs": {s: c.summary() for s, c in clean.items()},
        "results": [{"kind": t.kind, "name": t.name, "survived": t.survived, "rows_lost": t.rows_lost,
                     **t.detail} for t in results],
    }
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{kills} of {args.trials} kills landed while the stage ran (training's: mid-epoch); results: {args.out}")
    print(f"reliability: {survived}/{total} trials survived, {lost} rows lost")


if __name__ == "__main__":
    main()
