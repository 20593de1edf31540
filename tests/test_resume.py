"""``microseg run --resume``: an interrupted flow continues after its last completed stage,
and starts over when the config or an input changed."""

import re

import yaml
from typer.testing import CliRunner

from microseg import pipeline
from microseg.cli import app
from microseg.config import load_config

runner = CliRunner()


def _flow(cfg, tmp_path):
    """The config of a flow that fails halfway (sequences reads personality, never built),
    as a --conf file, and the same config loaded as the CLI loads it."""
    conf = tmp_path / "flow.yaml"
    conf.write_text(yaml.safe_dump(cfg.with_overrides(stages=["generate", "ingest", "aggregate", "sequences"])
                                   .model_dump(mode="json")))
    return ["run", "--progress-every", "0", "--conf", str(conf)], load_config("local", [str(conf)])


def test_a_resumed_flow_runs_only_the_stages_after_the_last_completed_one(spark, cfg, tmp_path):
    cli, run_cfg = _flow(cfg, tmp_path)
    first = runner.invoke(app, cli)
    assert first.exit_code == 1 and "error: sequences failed" in first.output
    assert "--resume" in first.output                                  # the hint says how to continue
    ctx = pipeline.Context.create(run_cfg, spark)
    bronze = ctx.tables.version("transactions")
    pipeline.run_stage("personality", ctx)                               # the cause, fixed

    resumed = runner.invoke(app, [*cli, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    for stage in ("generate", "ingest", "aggregate"):
        assert re.search(rf"^\[{stage}\] skipped: completed earlier", resumed.output, re.M)
    assert re.search(r"^\[sequences\] done in", resumed.output, re.M)
    assert ctx.tables.version("transactions") == bronze                  # not ingested again
    assert ctx.tables.exists("sequences")
    assert pipeline.resume_point(ctx, "all") == 4                       # all done: nothing left to run

    # another config: a run of its own, from the start
    assert pipeline.resume_point(pipeline.Context.create(run_cfg.with_overrides(seed=7), spark), "all") == 0
    # an input rewritten since (monthly spend, which aggregate wrote): from aggregate on
    ctx.tables.overwrite("monthly_spend", ctx.tables.read("monthly_spend"))
    assert pipeline.resume_point(ctx, "all") == 2


def test_resume_applies_to_flows_only(cfg):
    result = runner.invoke(app, ["run", "--stage", "aggregate", "--resume", "--set", f"tables.root={cfg.tables.root}"])
    assert result.exit_code == 2 and "--resume applies to a flow" in result.output
