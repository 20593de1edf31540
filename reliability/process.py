"""A stage as a real process: ``python -m microseg run --stage <s>`` in its own process
group (the Spark JVM and any Python workers with it), watched for its first and last
write, and killed with SIGKILL, all of it at once. Processes below the stage in sessions of
their own (torchrun's ranks) are not hit by that kill: they must die with their parent."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.02
OUTLIVE_S = 5.0   # how long a process below a killed stage may take to die with it
_running: set[subprocess.Popen] = set()   # started and not yet waited for


def stage_command(stage: str, overrides: dict) -> list[str]:
    """The CLI call; values are written as JSON, which the CLI reads as YAML."""
    sets = [arg for k, v in overrides.items() for arg in ("--set", f"{k}={json.dumps(v)}")]
    return [sys.executable, "-m", "microseg", "run", "--stage", stage, *sets]


def files_under(folders: list[Path]) -> set[str]:
    out = set()
    for folder in folders:
        for dirpath, _, names in os.walk(folder):
            out.update(os.path.join(dirpath, n) for n in names)
    return out


class StageProcess:
    """One run of a stage; ``log`` receives its stdout and stderr."""

    def __init__(self, stage: str, overrides: dict, log: Path):
        self.stage = stage
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(stage_command(stage, overrides), stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        _running.add(self.proc)
        self.started = time.monotonic()
        self.detached: set[int] = set()
        self.outlived: list[int] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def wait_for_new_file(self, folders: list[Path], before: set[str]) -> float | None:
        """Seconds from start until a file appears under ``folders`` that ``before`` lacks
        (the stage began writing its outputs); None if the process ended first."""
        while self.proc.poll() is None:
            if files_under(folders) - before:
                return self.elapsed()
            time.sleep(POLL_S)
        return None

    def watch_writes(self, folders: list[Path]) -> tuple[float | None, float | None]:
        """Run to the end, noting when the first and the last new file appeared under
        ``folders`` (seconds from start); the span between is the stage's write phase."""
        seen = files_under(folders)
        first = last = None
        while self.proc.poll() is None:
            now = files_under(folders)
            if now - seen:
                last = self.elapsed()
                first = first if first is not None else last
                seen = now
            time.sleep(POLL_S)
        return first, last

    def kill(self) -> bool:
        """SIGKILL the whole process group; True if it was still running. Returns once no
        live process of the group is left. ``detached``: the processes below the stage in
        other groups at the kill; ``outlived``: those of them still alive ``OUTLIVE_S``
        later (then killed, so that they do not disturb the re-run)."""
        running = self.proc.poll() is None
        pgid = self.proc.pid
        self.detached = {pid for pid, group in descendants(pgid).items() if group != pgid}
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.wait()
        while group_alive(pgid):
            time.sleep(POLL_S)
        deadline = time.monotonic() + OUTLIVE_S
        while (alive := self.detached & live().keys()) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        self.outlived = sorted(alive)
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return running

    def wait(self) -> int:
        code = self.proc.wait()
        _running.discard(self.proc)
        return code

    def result(self) -> dict:
        """The stage's JSON result line (the CLI prints it last on stdout)."""
        for line in reversed(self.log.read_text(errors="replace").splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"stage {self.stage} printed no result; see {self.log}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def stop_all() -> None:
    """SIGKILL the process group of every stage still running (the harness is stopping)."""
    for proc in list(_running):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def live() -> dict[int, tuple[int, int]]:
    """Every running process (zombies do not count): pid -> (parent pid, process group)."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            out[int(stat.parent.name)] = (int(fields[1]), int(fields[2]))
    return out


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is still running."""
    return any(group == pgid for _, group in live().values())


def descendants(pid: int) -> dict[int, int]:
    """The running processes below ``pid``, whatever their group: pid -> process group."""
    procs = live()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in procs.items():
        children.setdefault(parent, []).append(child)
    out, todo = {}, list(children.get(pid, []))
    while todo:
        child = todo.pop()
        out[child] = procs[child][1]
        todo += children.get(child, [])
    return out


def run_stage(stage: str, overrides: dict, log: Path) -> StageProcess:
    """Run a stage to its end; raises with its log's tail if it fails."""
    proc = StageProcess(stage, overrides, log)
    if proc.wait() != 0:
        raise RuntimeError(f"stage {stage} failed (exit {proc.proc.returncode}):\n{proc.output()[-3000:]}")
    return proc
