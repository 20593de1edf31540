"""The command line: ``microseg run --stage ingest --env local --set model.epochs=3``."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated

import typer

from microseg.config import ConfigError, load_config, parse_override

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Micro-segments of bank customers from their transactions.")

EnvOpt = Annotated[str, typer.Option("--env", help="environment file conf/<env>.yaml")]
ConfOpt = Annotated[list[str], typer.Option("--conf", help="extra YAML config file(s), applied in order")]
SetOpt = Annotated[list[str], typer.Option("--set", help="override: key.path=value (YAML value)")]


def _settings(env: str, conf: list[str], overrides: list[str]):
    """The validated config; a bad one ends the command with exit code 2 and the reason."""
    try:
        return load_config(env, conf, dict(parse_override(o) for o in overrides))
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


@app.command()
def run(
    stage: Annotated[str, typer.Option(help="a stage, or a flow: 'all' or 'monthly'")] = "all",
    env: EnvOpt = "local",
    conf: ConfOpt = [],  # noqa: B006
    set_: SetOpt = [],  # noqa: B006
) -> None:
    """Run one stage, or every stage in order."""
    from microseg import pipeline

    cfg = _settings(env, conf, set_)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    ctx = pipeline.Context.create(cfg)
    if stage in pipeline.FLOWS:
        pipeline.run_all(ctx, on_stage=lambda name, out: typer.echo(
            f"[{name}] {out['seconds']:.1f} s", err=True), flow=stage)
    elif stage not in pipeline.STAGES:
        typer.echo(f"error: unknown stage {stage!r}; choose a flow ({', '.join(pipeline.FLOWS)}) "
                   f"or a stage ({', '.join(pipeline.STAGES)})", err=True)
        raise typer.Exit(2)
    else:
        out = pipeline.run_stage(stage, ctx)
        typer.echo(json.dumps(out, default=str))


@app.command()
def status(env: EnvOpt = "local", conf: ConfOpt = [], set_: SetOpt = []) -> None:  # noqa: B006
    """Each table's current Delta version and last write, and the registered models' aliases."""
    from microseg import pipeline, tracking

    cfg = _settings(env, conf, set_)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    ctx = pipeline.Context.create(cfg)
    for row in pipeline.table_status(ctx):
        typer.echo(f"{row['table']:32s} " + (f"v{row['version']:<4d} {row['timestamp']}  {row['operation']}"
                                             if row["exists"] else "(not written yet)"))
    tracking.setup(cfg)
    for line in tracking.alias_status(cfg):
        typer.echo(line)


@app.command()
def stages() -> None:
    """List the stages in order, with their input and output tables."""
    from microseg.pipeline import STAGES

    for s in STAGES.values():
        typer.echo(f"{s.name:12s} {', '.join(s.inputs) or '-':45s} -> {', '.join(s.outputs) or '-':40s} {s.doc}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; jobs/ pass ``["run", "--stage", name, *args]``."""
    app(args=argv, prog_name="microseg")


if __name__ == "__main__":
    sys.exit(main())
