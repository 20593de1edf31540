"""The command line: ``microseg run --stage ingest --env local --set model.epochs=3``.

Exit codes, for schedulers: 0 done; 1 a stage failed (the last line says which, why, and
what to do); 2 a usage or configuration error (the option or key is named).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated, NoReturn

import typer
import yaml

from microseg.config import ConfigError, Settings, load_config, parse_override

log = logging.getLogger("microseg")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Micro-segments of bank customers from their transactions.")

EnvOpt = Annotated[str, typer.Option("--env", help="environment file conf/<env>.yaml")]
ConfOpt = Annotated[list[str], typer.Option("--conf", help="extra YAML config file(s), applied in order")]
SetOpt = Annotated[list[str], typer.Option("--set", help="override: key.path=value (YAML value)")]
EveryOpt = Annotated[float, typer.Option("--progress-every", min=0,
                                         help="seconds between progress lines on stderr; 0: none")]


def _fail(code: int, message: str, hint: str | None = None) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    if hint:
        typer.echo(f"hint: {hint}", err=True)
    raise typer.Exit(code)


def _settings(env: str, conf: list[str], overrides: list[str], extra: dict | None = None) -> Settings:
    """The validated config (``extra``: overrides from a command's own options, applied
    last); a bad one ends the command with exit code 2 and the reason."""
    try:
        return load_config(env, conf, {**dict(parse_override(o) for o in overrides), **(extra or {})})
    except ConfigError as err:
        _fail(2, str(err))
    except yaml.YAMLError as err:
        _fail(2, f"a --set value is not valid YAML ({getattr(err, 'problem', None) or err})",
              "quote a value that starts with { or [ as text: --set 'source.path=\"{root}/in\"'")


def _stages_of(cfg: Settings, target: str) -> list[str]:
    """The stages ``target`` runs in order: a flow's, as ``pipeline.run_all`` picks them
    (``stages`` from the config for ``all``), or the one stage."""
    from microseg import pipeline

    if target not in pipeline.FLOWS and target not in pipeline.STAGES:
        _fail(2, f"unknown stage {target!r}; choose a flow ({', '.join(pipeline.FLOWS)}) "
                 f"or a stage ({', '.join(pipeline.STAGES)})")
    if target not in pipeline.FLOWS:
        return [target]
    try:
        return pipeline.flow_stages(cfg, target)
    except KeyError as err:
        _fail(2, err.args[0])


def _reason(err: Exception) -> str:
    """The first line of an error's message (for a Java error, the Java exception's)."""
    from py4j.protocol import Py4JJavaError

    text = (str(err.java_exception) if isinstance(err, Py4JJavaError) else str(err)).strip()
    return text.splitlines()[0][:500] if text else type(err).__name__


def _execute(cfg: Settings, target: str, every: float, resume: bool = False) -> dict[str, dict]:
    """Run a stage or a flow, with progress lines on stderr; a failing stage ends the
    command with exit code 1 after its traceback, one line naming it, and what to do.
    ``resume``: a flow skips the stages the run record shows completed (``runs``)."""
    from microseg import pipeline
    from microseg.progress import Progress

    names = _stages_of(cfg, target)
    if resume and target not in pipeline.FLOWS:
        _fail(2, f"--resume applies to a flow ({', '.join(pipeline.FLOWS)}), not to the stage {target!r}",
              "run the stage again without --resume (re-running a stage is safe)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    ctx = pipeline.Context.create(cfg)
    with Progress(ctx.spark, names[0], every) as progress:
        def done(name: str, out: dict) -> None:
            if out.get("skipped"):
                progress.say(f"[{name}] skipped: completed earlier with this config and these inputs (--resume)")
            else:
                progress.say(f"[{name}] done in {out['seconds']:.1f} s")
            following = names[names.index(name) + 1:]
            if following:
                progress.start(following[0])

        try:
            if target in pipeline.FLOWS:
                return pipeline.run_all(ctx, on_stage=done, flow=target, resume=resume)
            out = pipeline.run_stage(target, ctx)
            done(target, out)
            return {target: out}
        except ConfigError as err:
            _fail(2, f"{progress.label}: {err}")
        except Exception as err:
            log.exception("stage %s failed", progress.label)
            _fail(1, f"{progress.label} failed: {_reason(err)}",
                  f"fix the cause, then re-run from it: microseg run --stage {progress.label} with the "
                  "same --env/--conf/--set, then the stages after it (re-running a stage is safe), or "
                  "the flow again with --resume; `microseg status` shows what each table holds")


@app.command()
def run(
    stage: Annotated[str, typer.Option(help="a stage, or a flow: 'all', 'monthly' or 'report'")] = "all",
    env: EnvOpt = "local",
    conf: ConfOpt = [],  # noqa: B006
    set_: SetOpt = [],  # noqa: B006
    progress_every: EveryOpt = 5.0,
    from_run: Annotated[str | None, typer.Option(
        "--from-run", help="reproduce an MLflow run: its config, with its input tables pinned to the "
                           "Delta versions it read; --set still applies on top")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="a flow: start after the last stage that completed with this config and these "
                         "input versions (the run record, tables.names.runs)")] = False,
) -> None:
    """Run one stage, or a flow of stages in order."""
    from microseg.pipeline import FLOWS

    cfg = _settings(env, conf, set_)
    if from_run:
        from microseg import reproduce, tracking

        overrides = dict(parse_override(o) for o in set_)
        cfg = reproduce.config_from_run(from_run, tracking.tracking_uri(cfg)).with_overrides(**overrides)
    results = _execute(cfg, stage, progress_every, resume)
    if stage not in FLOWS:   # one stage: its figures on stdout
        typer.echo(json.dumps(results[stage], default=str))


@app.command()
def generate(
    customers: Annotated[int | None, typer.Option(help="customers (generator.customers)")] = None,
    months: Annotated[int | None, typer.Option(help="months of history (generator.months)")] = None,
    start_month: Annotated[str | None, typer.Option(help="first month, YYYY-MM (generator.start_month)")] = None,
    bad_rows: Annotated[list[str], typer.Option(
        "--bad-rows", help="REASON=rate: share of rows to spoil, e.g. UNPARSABLE_DATE=0.01; repeatable",
    )] = [],  # noqa: B006
    env: EnvOpt = "local",
    conf: ConfOpt = [],  # noqa: B006
    set_: SetOpt = [],  # noqa: B006
    progress_every: EveryOpt = 5.0,
) -> None:
    """Generate a synthetic bank: monthly landing files, a loan book, the planted ground truth."""
    chosen = {"customers": customers, "months": months, "start_month": start_month}
    extra = {f"generator.{key}": value for key, value in chosen.items() if value is not None}
    if bad_rows:
        extra["generator.bad_rows"] = dict(_rate(text) for text in bad_rows)
    out = _execute(_settings(env, conf, set_, extra), "generate", progress_every)["generate"]
    typer.echo(json.dumps(out, default=str))


def _rate(text: str) -> tuple[str, float]:
    reason, _, rate = text.partition("=")
    try:
        return reason.strip(), float(rate)
    except ValueError:
        _fail(2, f"--bad-rows {text!r}: write REASON=rate, e.g. UNPARSABLE_DATE=0.01")


@app.command()
def report(
    env: EnvOpt = "local",
    conf: ConfOpt = [],  # noqa: B006
    set_: SetOpt = [],  # noqa: B006
    progress_every: EveryOpt = 5.0,
) -> None:
    """Evaluate what `run` built, write the HTML report: the flow compare, evaluate, render."""
    _execute(_settings(env, conf, set_), "report", progress_every)


@app.command()
def promote(
    version: Annotated[int, typer.Option(help="the model version the alias moves to")],
    model: Annotated[str | None, typer.Option(
        help="registered model; default: the one model.kind trains (mlflow.registered_model)")] = None,
    env: EnvOpt = "local",
    conf: ConfOpt = [],  # noqa: B006
    set_: SetOpt = [],  # noqa: B006
) -> None:
    """Move the alias (mlflow.alias, e.g. champion) to a model version by hand: promote or roll back."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from microseg import pipeline, tracking

    cfg = _settings(env, conf, set_)
    name, alias = model or pipeline.registered_name(cfg), cfg.mlflow.alias
    tracking.setup(cfg)
    client = MlflowClient()
    try:
        client.get_model_version(name, str(version))
    except MlflowException:
        _fail(2, f"model {name} has no version {version}", "`microseg status` lists the registered models")
    try:
        old = client.get_model_version_by_alias(name, alias).version
    except MlflowException:
        old = "none"
    client.set_registered_model_alias(name, alias, str(version))
    typer.echo(f"model {name}: {alias} {old} -> {version}")


def status_lines(cfg: Settings) -> list[str]:
    """Each table's current Delta version and last write, then the registered models' aliases."""
    from microseg import pipeline, tracking

    ctx = pipeline.Context.create(cfg)
    lines = [f"{row['table']:32s} " + (f"v{row['version']:<4d} {row['timestamp']}  {row['operation']}"
                                       if row["exists"] else "(not written yet)")
             for row in pipeline.table_status(ctx)]
    tracking.setup(cfg)
    return lines + tracking.alias_status(cfg)


@app.command()
def status(env: EnvOpt = "local", conf: ConfOpt = [], set_: SetOpt = []) -> None:  # noqa: B006
    """Each table's current Delta version and last write, and the registered models' aliases."""
    cfg = _settings(env, conf, set_)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    for line in status_lines(cfg):
        typer.echo(line)


@app.command()
def stages() -> None:
    """List the stages in order, with their input and output tables, then the flows."""
    from microseg.pipeline import FLOWS, STAGES

    for s in STAGES.values():
        typer.echo(f"{s.name:12s} {', '.join(s.inputs) or '-':45s} -> {', '.join(s.outputs) or '-':40s} {s.doc}")
    for name, names in FLOWS.items():
        typer.echo(f"flow {name}: {' -> '.join(names)}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; jobs/ pass ``["run", "--stage", name, *args]``."""
    app(args=argv, prog_name="microseg")


if __name__ == "__main__":
    sys.exit(main())
