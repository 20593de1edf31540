"""Progress of long stages for people and scheduler logs.

While a :class:`Progress` is open, a daemon thread writes a line such as
``[ingest] 12.3 s  stage 5: 3/8 tasks`` every few seconds: the stage's time so far and the
Spark stages running, from Spark's status tracker. To a terminal the line is rewritten in
place; anywhere else (a log file, a scheduler) every update is a plain line of its own.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from py4j.protocol import Py4JError
from pyspark.sql import SparkSession

CLEAR = "\r\x1b[K"   # back to the line's start and erase it (terminals only)


class Progress:
    """``with Progress(spark, "ingest") as p: ...``; ``p.start(name)`` moves on to the next stage
    of a flow and ``p.say(text)`` writes a line of its own without tearing a progress line."""

    def __init__(self, spark: SparkSession, label: str, every: float = 5.0, stream: TextIO | None = None):
        self.label = label
        self.every = every
        self.stream = stream or sys.stderr
        self._tracker = spark.sparkContext.statusTracker()
        self._tty = self.stream.isatty()
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="microseg-progress", daemon=True)

    def start(self, label: str) -> None:
        """Count time for the next stage."""
        self.label, self._started = label, time.monotonic()

    def line(self) -> str:
        parts = [f"[{self.label}] {time.monotonic() - self._started:.1f} s"]
        for stage_id in sorted(self._tracker.getActiveStageIds()):
            info = self._tracker.getStageInfo(stage_id)
            if info is not None:   # it may finish between the two calls
                parts.append(f"stage {stage_id}: {info.numCompletedTasks}/{info.numTasks} tasks")
        return "  ".join(parts)

    def say(self, text: str) -> None:
        with self._lock:
            self.stream.write((CLEAR if self._tty else "") + text + "\n")
            self.stream.flush()

    def _loop(self) -> None:
        while not self._done.wait(self.every):
            try:
                text = self.line()
            except Py4JError:   # the JVM is going away: nothing left to watch
                return
            with self._lock:
                self.stream.write(CLEAR + text if self._tty else text + "\n")
                self.stream.flush()

    def __enter__(self) -> Progress:
        if self.every > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._tty:
            with self._lock:
                self.stream.write(CLEAR)
                self.stream.flush()
