"""The trials: a stage SIGKILLed during its writes and re-run; training SIGKILLed mid-epoch
and re-run; two ingests at once."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from microseg.model.train import state_digest
from microseg.pipeline import STAGES
from reliability.fingerprint import Fingerprint
from reliability.lakehouse import Lakehouse
from reliability.process import POLL_S, StageProcess, files_under


@dataclass
class CleanRun:
    """A stage's clean run from its snapshot: its outputs before and after, and when it
    wrote (seconds from its start: first and last new file under its output folders)."""
    stage: str
    before: dict[str, Fingerprint]
    after: dict[str, Fingerprint]
    seconds: float
    first_write: float
    last_write: float

    def summary(self) -> dict:
        return {"seconds": round(self.seconds, 1), "first_write_s": round(self.first_write, 1),
                "last_write_s": round(self.last_write, 1), "rows": {k: fp.rows for k, fp in self.after.items()}}


@dataclass
class Trial:
    kind: str                      # "kill" or "concurrent"
    name: str
    survived: bool
    rows_lost: int
    detail: dict = field(default_factory=dict)
    killed: bool = False           # a kill trial whose SIGKILL landed while the stage ran

    def line(self, n: int, total: int) -> str:
        facts = ", ".join(f"{k}: {v}" for k, v in self.detail.items() if k != "problems")
        problems = self.detail.get("problems")
        verdict = "survived" if self.survived else f"FAILED ({'; '.join(problems)})"
        return f"trial {n}/{total} {self.kind} {self.name}: {facts}; {verdict}"


def clean_run(lake: Lakehouse, stage: str) -> CleanRun:
    """Run ``stage`` on the current lakehouse, watching its writes (the lakehouse is
    snapshotted under the stage's name first: the state its trials start from)."""
    outputs = STAGES[stage].outputs
    lake.snapshot(stage)
    before = lake.fingerprints(outputs)
    proc = lake.start(stage, f"clean-{stage}")
    first, last = proc.watch_writes(lake.folders(outputs))
    if proc.wait() != 0 or first is None:
        raise RuntimeError(f"clean run of {stage} failed or wrote nothing; see {proc.log}")
    return CleanRun(stage, before, lake.fingerprints(outputs), proc.elapsed(), first, last)


def kill_trial(lake: Lakehouse, clean: CleanRun, rng: random.Random, n: int) -> Trial:
    """From the stage's snapshot: start it, SIGKILL its process group at a random moment of
    its write phase, check what readers see, re-run it, compare with the clean run."""
    stage, outputs = clean.stage, STAGES[clean.stage].outputs
    lake.restore(stage)
    folders = lake.folders(outputs)
    proc = lake.start(stage, f"trial{n}-{stage}-killed")
    began = proc.wait_for_new_file(folders, files_under(folders))
    problems = []
    if began is None:
        problems.append(f"the stage ended (exit {proc.proc.returncode}) before writing anything")
    else:
        time.sleep(rng.uniform(0, 0.8 * (clean.last_write - clean.first_write)))
    killed_at = proc.elapsed()
    killed = proc.kill()

    visible = {}
    for key, fp in lake.fingerprints(outputs).items():
        visible[key] = ("before" if fp == clean.before[key] else "after" if fp == clean.after[key]
                        else "partial")
        if visible[key] == "partial":
            problems.append(f"{key}: readers see a version that is neither before nor after ({fp})")
        if fp.duplicates:
            problems.append(f"{key}: {fp.duplicates} duplicate rows visible")

    problems += outlived(proc)
    rerun_start = time.monotonic()
    try:
        lake.run(stage, f"trial{n}-{stage}-rerun")
    except RuntimeError as err:
        problems.append(f"re-run failed: {str(err).splitlines()[0]}")
    diffs, lost = compare(lake.fingerprints(outputs), clean.after, "after re-run differs from the clean run")
    problems += diffs
    detail = {
        "killed": (f"{killed_at - began:.1f} s into its writes ({killed_at:.1f} s after start)" if killed
                   else "no: it ended first (a clean run, checked all the same)"),
        "visible": " ".join(f"{k}={v}" for k, v in visible.items()),
        "re-run": f"{time.monotonic() - rerun_start:.0f} s",
        "problems": problems,
    }
    return Trial("kill", stage, not problems, lost, detail, killed)


def outlived(proc: StageProcess) -> list[str]:
    return [f"{len(proc.outlived)} process(es) outside the stage's group outlived the kill: "
            f"{proc.outlived}"] if proc.outlived else []


class Checkpoint:
    """The train stage's checkpoint, ``last.pt`` in its run's folder under train.checkpoint_dir."""

    def __init__(self, lake: Lakehouse):
        self.folder = Path(lake.cfg.data_path(lake.cfg.train.checkpoint_dir))

    def load(self) -> dict | None:
        paths = list(self.folder.glob("*/last.pt"))
        assert len(paths) <= 1, f"more than one training run's checkpoint: {paths}"
        try:
            return torch.load(paths[0], weights_only=True) if paths else None
        except FileNotFoundError:   # the stage finished and removed it
            return None

    def epoch(self) -> int:
        """The epoch it holds; 0 when there is none."""
        return (self.load() or {"epoch": 0})["epoch"]

    def saves(self, proc: StageProcess, last: int = 0) -> Iterator[tuple[float, int, str]]:
        """(seconds from start, epoch, digest of the model's weights) for each epoch after
        ``last`` checkpointed while ``proc`` runs (the final one too: the stage removes it
        only after logging the model)."""
        while proc.proc.poll() is None:
            if (ckpt := self.load()) and ckpt["epoch"] > last:
                last = ckpt["epoch"]
                yield proc.elapsed(), last, state_digest(ckpt["model"])
            time.sleep(POLL_S)


def logged_weights(lake: Lakehouse, before: set[str]) -> str | None:
    """The digest of the encoder weights logged to MLflow since ``before`` (a listing of
    its artifacts); None unless exactly one encoder was logged."""
    new = [p for p in files_under([lake.root / "mlartifacts"]) - before if p.endswith("/encoder.pt")]
    return state_digest(torch.load(new[0], weights_only=True)) if len(new) == 1 else None


@dataclass
class CleanTraining:
    """The train stage's clean run from its snapshot: when each epoch's checkpoint was
    saved (seconds from start), the digest of the weights after each epoch, and that of
    the weights it logged (the epoch model.keep names)."""
    seconds: float
    saves: list[float]
    weights: list[str]
    logged: str

    @property
    def epoch_s(self) -> float:
        return statistics.median(b - a for a, b in zip(self.saves, self.saves[1:]))

    def summary(self) -> dict:
        return {"seconds": round(self.seconds, 1), "checkpoints_s": [round(t, 1) for t in self.saves],
                "weights": self.weights, "logged": self.logged}


def clean_training(lake: Lakehouse) -> CleanTraining:
    lake.snapshot("train")
    before = files_under([lake.root / "mlartifacts"])
    proc = lake.start("train", "clean-train")
    saves = list(Checkpoint(lake).saves(proc))
    logged = logged_weights(lake, before) if proc.wait() == 0 else None
    if logged is None or len(saves) < 2 or [e for _, e, _ in saves] != list(range(1, len(saves) + 1)):
        raise RuntimeError(f"clean run of train failed, or did not checkpoint 2 or more epochs in turn "
                           f"({[e for _, e, _ in saves]}); see {proc.log}")
    return CleanTraining(proc.elapsed(), [t for t, _, _ in saves], [w for _, _, w in saves], logged)


def training_kill_trial(lake: Lakehouse, clean: CleanTraining, rng: random.Random, n: int) -> Trial:
    """From the train snapshot: start training, SIGKILL its process group in epoch k + 1
    (k drawn from 1 .. epochs - 1: the kill waits for epoch k's checkpoint, then a random
    part of an epoch) and re-run it. The re-run must resume from the checkpoint the kill
    left, and the weights after each epoch it trains, and those it logs, must equal the
    clean run's bit for bit. No rank may outlive the kill."""
    lake.restore("train")
    checkpoint, epochs = Checkpoint(lake), len(clean.saves)
    before = files_under([lake.root / "mlartifacts"])
    k = rng.randint(1, epochs - 1)
    proc = lake.start("train", f"trial{n}-train-killed")
    saved = next((t for t, epoch, _ in checkpoint.saves(proc) if epoch >= k), None)
    problems = []
    if saved is None:
        problems.append(f"the stage ended (exit {proc.proc.returncode}) before checkpointing epoch {k}")
    else:
        time.sleep(rng.uniform(0.2, 0.6) * clean.epoch_s)
    killed_at = proc.elapsed()
    running = proc.kill()
    held = checkpoint.epoch()
    mid_epoch = running and saved is not None and held == k and len(proc.detached) > 0
    problems += outlived(proc)

    rerun = lake.start("train", f"trial{n}-train-rerun")
    trained = {epoch: weights for _, epoch, weights in checkpoint.saves(rerun, held)}
    resumed = rerun.result()["resumed_from_epoch"] if rerun.wait() == 0 else None
    rerun_s = rerun.elapsed()
    if resumed is None:
        problems.append(f"re-run failed (exit {rerun.proc.returncode}); see {rerun.log}")
    elif resumed != held:
        problems.append(f"the re-run resumed from epoch {resumed}, the checkpoint held epoch {held}")
    if list(trained) != list(range(held + 1, epochs + 1)):
        problems.append(f"the re-run checkpointed epochs {list(trained)}, not {held + 1} to {epochs}")
    if differ := [e for e, w in trained.items() if w != clean.weights[e - 1]]:
        problems.append(f"the weights after epochs {differ} differ from the clean run's")
    if (logged := logged_weights(lake, before)) != clean.logged:
        problems.append(f"the logged weights {logged} differ from the clean run's {clean.logged}")
    detail = {
        "killed": (f"in epoch {k + 1} of {epochs}, {killed_at - saved:.1f} s after epoch {k}'s checkpoint, "
                   f"{len(proc.detached)} ranks running" if mid_epoch
                   else f"no: not mid-epoch (checkpoint holds epoch {held}, running: {running})"),
        "resumed from epoch": resumed,
        "weights": (f"after epochs {list(trained)} and as logged equal the clean run's"
                    if trained and not differ and logged == clean.logged else "differ"),
        "re-run": f"{rerun_s:.0f} s",
        "problems": problems,
    }
    return Trial("kill", "train", not problems, 0, detail, mid_epoch)


def compare(got: dict[str, Fingerprint], want: dict[str, Fingerprint], what: str) -> tuple[list[str], int]:
    """The tables whose fingerprint differs from ``want`` (one line each), and the rows
    missing against it."""
    problems = [f"{key} {what}: {fp} vs {want[key]}" for key, fp in got.items() if fp != want[key]]
    return problems, sum(max(0, want[k].rows - fp.rows) for k, fp in got.items())


@dataclass
class ConcurrentCase:
    """Two ingests of different files into the same tables, from snapshot ``start``;
    ``expected``: the tables after the same ingests run one after the other."""
    name: str
    start: str
    paths: tuple[str, str]
    expected: dict[str, Fingerprint]


BRONZE = STAGES["ingest"].outputs


def concurrent_reference(lake: Lakehouse, name: str, start: str, paths: tuple[str, str]) -> ConcurrentCase:
    lake.restore(start)
    for i, path in enumerate(paths):
        lake.run("ingest", f"reference-{name}-{i}", **{"source.path": path})
    return ConcurrentCase(name, start, paths, lake.fingerprints(BRONZE))


def concurrent_trial(lake: Lakehouse, case: ConcurrentCase, n: int) -> Trial:
    lake.restore(case.start)
    procs = [lake.start("ingest", f"trial{n}-concurrent-{i}", **{"source.path": path})
             for i, path in enumerate(case.paths)]
    codes = [p.wait() for p in procs]
    problems = [f"ingest {i} failed (exit {c}); see {p.log}" for i, (p, c) in enumerate(zip(procs, codes)) if c]
    for p in procs:
        if p.proc.returncode == 0 and (r := p.result())["rows_inserted"] != r["rows_valid"]:
            problems.append(f"{r['batch_id']}: {r['rows_inserted']} of {r['rows_valid']} valid rows inserted")
    got = lake.fingerprints(BRONZE)
    diffs, lost = compare(got, case.expected, "differs from the sequential ingests")
    problems += diffs
    retries = sum(p.output().count("concurrent commit") for p in procs)
    detail = {"rows": " ".join(f"{k}={got[k].rows}" for k in BRONZE),
              "conflicts retried": retries, "problems": problems}
    return Trial("concurrent", case.name, not problems, lost, detail)
