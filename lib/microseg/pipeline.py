"""The stage registry: jobs/, the CLI and the notebooks all run stages through here.

Each stage body lives in ``microseg.stages`` (prep, model, score, report): it reads its
input tables, calls pure DataFrame functions from ``prep``/``model``/``score``, writes its
output tables, and returns a small dict of figures. The registry below names each stage's
input and output tables; every stage can be re-run (outputs replaced atomically or merged
on keys).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from microseg import runs
from microseg.config import Settings
from microseg.stages.context import Context, registered_name, run_timed
from microseg.stages.model import train_stage
from microseg.stages.prep import (aggregate_stage, generate_stage, ingest_stage, labels_stage, personality_stage,
                                  sequences_stage)
from microseg.stages.report import compare_stage, evaluate_stage, render_stage
from microseg.stages.score import assign_stage, embed_stage, segment_stage, summary_stage

__all__ = ["Context", "FLOWS", "STAGES", "Stage", "flow_stages", "registered_name", "resume_point", "run_all",
           "run_stage", "table_status"]

log = logging.getLogger("microseg")


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Context], dict]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    doc: str


STAGES: dict[str, Stage] = {
    s.name: s
    for s in [
        Stage("generate", generate_stage, (), ("ground_truth",),
              "synthetic bank: landing files, loan book, planted ground truth (source.adapter: generator)"),
        Stage("ingest", ingest_stage, (), ("transactions", "quarantine"),
              "read the source, validate into bronze; quarantine the rest"),
        Stage("aggregate", aggregate_stage, ("transactions",), ("monthly_spend", "monthly_account"),
              "monthly spend per class and account totals"),
        Stage("labels", labels_stage, ("monthly_account",), ("labels",),
              "loan default and liquidity index per customer"),
        Stage("personality", personality_stage, ("monthly_spend",), ("personality",),
              "spending personality per customer-month"),
        Stage("sequences", sequences_stage, ("monthly_spend", "monthly_account", "personality"),
              ("sequences", "feature_stats"), "per-customer monthly sequences"),
        Stage("train", train_stage, ("sequences", "feature_stats"), (),
              "train the LSTM, log and register it in MLflow"),
        Stage("embed", embed_stage, ("sequences",), ("embeddings",),
              "embed every customer with the champion encoder"),
        Stage("segment", segment_stage, ("embeddings", "personality"),
              ("segment_centroids", "segments", "segment_profiles"),
              "fit micro and coarse segments, store centroids, assign everyone"),
        Stage("assign", assign_stage, ("embeddings", "segment_centroids"),
              ("segments", "segment_profiles", "segment_migration"),
              "monthly: assign to stored centroids, profile, count migrations"),
        Stage("summary", summary_stage, ("segment_profiles", "monthly_account"), (),
              "print what was built, and what is missing (balances)"),
        Stage("compare", compare_stage, ("sequences", "personality"), ("embeddings", "segments"),
              "the comparison variants: feed-forward encoder and raw traits, segmented"),
        Stage("evaluate", evaluate_stage, ("segments", "labels", "sequences"), (),
              "segment quality, downstream tasks vs bespoke models, explanation, claims"),
        Stage("render", render_stage, (), (), "the evaluation as one HTML page, logged to MLflow"),
    ]
}


def run_stage(name: str, ctx: Context) -> dict:
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGES)} or 'all'")
    return run_timed(name, STAGES[name].run, ctx)


def table_status(ctx: Context) -> list[dict]:
    """Every configured table: exists, current version, when and how it was last written."""
    out = []
    for key in ctx.cfg.tables.names:
        row = {"table": ctx.tables.name(key), "exists": ctx.tables.exists(key)}
        if row["exists"]:
            last = ctx.tables.history(key).head()           # the newest commit only
            row.update(version=int(last["version"]), timestamp=str(last["timestamp"]),
                       operation=last["operation"])
        out.append(row)
    return out


FLOWS = {
    "all": ["generate", "ingest", "aggregate", "labels", "personality", "sequences", "train", "embed",
            "segment", "summary"],
    # a new month: its files in, sequences up to it, embed and assign with the champion
    # encoder and the stored centroids (no retraining, no refit), migrations counted
    "monthly": ["ingest", "aggregate", "labels", "personality", "sequences", "embed", "assign", "summary"],
    # the evaluation of what `all` built: comparison variants, metrics, the HTML report
    "report": ["compare", "evaluate", "render"],
}


# A scoring month reads every customer up to as_of: its outcomes are not observed yet, so
# references such as a loan's grant date (for forward labels) do not apply.
FLOW_SETTINGS = {"monthly": {"sequences.reference": "as_of"}}


def flow_stages(cfg: Settings, flow: str) -> list[str]:
    """The stages ``flow`` runs, in order: for ``all`` the config's ``stages`` when set;
    ``generate`` only when ``source.adapter`` is the generator (never beside a real source)."""
    if flow == "all" and cfg.stages:
        names = cfg.stages
    else:
        names = [n for n in FLOWS[flow] if n != "generate" or cfg.source.synthetic]
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise KeyError(f"config key stages: unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
    if "generate" in names and not cfg.source.synthetic:
        raise KeyError(f"config key stages: 'generate' writes a synthetic bank, but source.adapter is "
                       f"{cfg.source.adapter!r} (a real source); drop generate from stages")
    return names


def run_all(ctx: Context, on_stage: Callable[[str, dict], None] | None = None,
            flow: str = "all", resume: bool = False) -> dict[str, dict]:
    """The stages of ``flow`` in order (``flow_stages``), with the flow's own settings
    (``FLOW_SETTINGS``), each recorded in the run record when it completes; ``resume``
    skips the stages the record shows completed for this config and these input versions
    (``runs.completed``: their figures are ``{"skipped": True}``)."""
    if FLOW_SETTINGS.get(flow):
        ctx = Context(ctx.cfg.with_overrides(**FLOW_SETTINGS[flow]), ctx.spark, ctx.tables, ctx.taxonomy)
    names = flow_stages(ctx.cfg, flow)
    skip = resume_point(ctx, flow) if resume else 0
    results = {}
    for i, name in enumerate(names):
        if i < skip:
            results[name] = {"skipped": True}
        else:
            results[name] = run_stage(name, ctx)
            runs.record(ctx, flow, name, STAGES[name].inputs, STAGES[name].outputs)
        if on_stage:
            on_stage(name, results[name])
    return results


def resume_point(ctx: Context, flow: str) -> int:
    """How many of the flow's stages a resumed run skips (``runs.completed``)."""
    return runs.completed(ctx, flow, [(n, STAGES[n].inputs, STAGES[n].outputs) for n in flow_stages(ctx.cfg, flow)])
