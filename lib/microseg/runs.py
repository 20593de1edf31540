"""The run record (``tables.names.runs``): which stages of a flow completed, for which config and
input versions, so that ``microseg run --resume`` starts after them.

A flow's run key is a hash of its name and the whole validated config. After each stage
completes, one row records the Delta versions of the stage's input and output tables and
a fingerprint of the source's files (names and sizes). On resume, a stage is skipped when
its row exists under the same key and all three still hold; the first stage that fails
the test runs, and so does every stage after it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from pyspark.sql import functions as F

from microseg import tracking
from microseg.stages.context import Context

TABLE = "runs"
SCHEMA = ("run_key string, flow string, stage string, finished_at timestamp, inputs string, "
          "outputs string, source string, code_version string")


def run_key(ctx: Context, flow: str) -> str:
    """The flow's name and its config, hashed."""
    text = json.dumps([flow, ctx.cfg.model_dump(mode="json")], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def source_fingerprint(ctx: Context) -> str:
    """A hash of the source's files and loan book: each file's name and size."""
    from microseg.sources.files import list_files

    paths = [ctx.cfg.source.path] + ([ctx.cfg.source.loans] if ctx.cfg.source.loans else [])
    listed = [f for p in paths for f in list_files(ctx.spark, ctx.cfg.data_path(p))]
    return hashlib.sha256(json.dumps(listed).encode()).hexdigest()[:16]


def _state(ctx: Context, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> dict[str, str]:
    return {"inputs": json.dumps(ctx.tables.versions(list(inputs)), sort_keys=True),
            "outputs": json.dumps(ctx.tables.versions(list(outputs)), sort_keys=True),
            "source": source_fingerprint(ctx)}


def record(ctx: Context, flow: str, stage: str, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> None:
    """Record that ``stage`` of ``flow`` completed, replacing an earlier row for it."""
    key = run_key(ctx, flow)
    row = {"run_key": key, "flow": flow, "stage": stage, "finished_at": dt.datetime.now(dt.timezone.utc),
           "code_version": tracking.code_version(), **_state(ctx, inputs, outputs)}
    df = ctx.spark.createDataFrame([row], SCHEMA)
    ctx.tables.replace_where(TABLE, df, f"run_key = '{key}' AND stage = '{stage}'")


def completed(ctx: Context, flow: str, stages: list[tuple[str, tuple[str, ...], tuple[str, ...]]]) -> int:
    """How many of ``stages`` (name, inputs, outputs), from the first, a resumed run skips:
    each recorded under this flow's key with its tables and the source as they are now."""
    if not ctx.tables.exists(TABLE):
        return 0
    rows = {r.stage: r for r in ctx.tables.read(TABLE).where(F.col("run_key") == run_key(ctx, flow))
            .select("stage", "inputs", "outputs", "source").collect()}   # one row per stage of the flow
    done = 0
    for name, inputs, outputs in stages:
        row = rows.get(name)
        if row is None or {"inputs": row.inputs, "outputs": row.outputs, "source": row.source} != \
                _state(ctx, inputs, outputs):
            break
        done += 1
    return done
