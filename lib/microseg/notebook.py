"""What the notebooks in ``notebooks/`` share: widgets for the parameters users change, and
running a stage or a flow through the same registry as the jobs and the CLI.

On Databricks the values come from widgets (a job passes them as parameters); run as
plain Python there are no widgets, every value is its default, and a notebook runs
against the embedded default (``local``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable

import yaml

from microseg.config import Settings, load_config, parse_override

Widget = Callable[[str, str, str], str]   # (name, default, label) -> value


def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def widget(name: str, default: str, label: str) -> str:
    """A text widget's value on Databricks (a job's parameter of that name fills it);
    ``default`` elsewhere."""
    if not on_databricks():
        return default
    from databricks.sdk.runtime import dbutils

    dbutils.widgets.text(name, default, label)
    return dbutils.widgets.get(name)


def settings(read_widget: Widget = widget, **keys: str) -> Settings:
    """The config from the widgets ``env``, ``conf`` (files, comma-separated) and
    ``overrides`` (``key=value`` items, one per line or separated by ``;``), then one widget
    per entry of ``keys`` (widget name -> config key, e.g. ``as_of="sequences.as_of"``)
    whose default is that key's value; each widget value is read as YAML, like ``--set``.
    ``read_widget`` stands in for the widgets (a test passes a job's parameters)."""
    env = read_widget("env", "databricks" if on_databricks() else "local", "environment: conf/<env>.yaml")
    files = read_widget("conf", "", "extra config files, comma-separated")
    conf = [f.strip() for f in files.split(",") if f.strip()]
    items = re.split(r"[;\n]", read_widget("overrides", "", "overrides: key=value; key=value"))
    overrides = dict(parse_override(item) for item in items if item.strip())
    cfg = load_config(env, conf, overrides)
    if not keys:
        return cfg
    current = cfg.model_dump(mode="json")
    for name, key in keys.items():
        value = current
        for part in key.split("."):
            value = value[part]
        overrides[key] = _from_text(read_widget(name, _as_text(value), key))
    return load_config(env, conf, overrides)


def _as_text(value) -> str:
    """A config value as a widget shows it: strings as they are, the rest as flow YAML."""
    if value is None or isinstance(value, str):
        return value or ""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("...\n").strip()


def _from_text(text: str):
    """A widget's value read as YAML, like ``--set``; text that is not YAML (``{root}/x``)
    stays text, for the config's validation to judge."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def run(cfg: Settings, target: str) -> dict[str, dict]:
    """Run a stage or a flow (``all``, ``monthly``, ``report``); prints one line per stage
    and returns each stage's figures."""
    from microseg import pipeline

    ctx = pipeline.Context.create(cfg)
    if target in pipeline.FLOWS:
        return pipeline.run_all(ctx, flow=target, on_stage=lambda name, out: print(
            f"[{name}] done in {out['seconds']:.1f} s"))
    out = pipeline.run_stage(target, ctx)
    print(json.dumps(out, default=str, indent=1))
    return {target: out}
