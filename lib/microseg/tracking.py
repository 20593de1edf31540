"""MLflow: where runs go, what each run records, and the registered encoder."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from microseg.config import Settings
from microseg.model import compat

REPO = Path(__file__).resolve().parents[2]
log = logging.getLogger("microseg")


def tracking_uri(cfg: Settings) -> str:
    if cfg.mlflow.tracking_uri:
        return cfg.mlflow.tracking_uri
    root = Path(cfg.tables.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def setup(cfg: Settings) -> str:
    """Point MLflow at the configured store and experiment; returns the experiment id."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")   # no bars in job logs
    mlflow.set_tracking_uri(tracking_uri(cfg))
    mlflow.set_registry_uri(cfg.mlflow.registry_uri or tracking_uri(cfg))
    exp = mlflow.get_experiment_by_name(cfg.mlflow.experiment)
    if exp is None:
        artifacts = None
        if cfg.mlflow.tracking_uri is None:
            artifacts = (Path(cfg.tables.root).resolve() / "mlartifacts").as_uri()
        mlflow.create_experiment(cfg.mlflow.experiment, artifact_location=artifacts)
    return mlflow.set_experiment(cfg.mlflow.experiment).experiment_id


def code_version() -> str:
    """The git commit of the code, with ``-dirty`` when the tree has changes."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def flat_params(cfg: Settings) -> dict[str, str]:
    """The resolved config as flat ``a.b.c -> value`` params (MLflow's 6,000-char limit)."""
    out: dict[str, str] = {}

    def walk(prefix: str, node) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = str(node)[:6000]

    walk("", cfg.model_dump())
    return out


def log_run_context(cfg: Settings, table_versions: dict[str, int]) -> None:
    """Config, code version and the Delta table versions this run read."""
    mlflow.log_params(flat_params(cfg))
    mlflow.log_dict(cfg.model_dump(mode="json"), "config.json")
    mlflow.set_tags({"code_version": code_version(),
                     **{f"delta.{name}.version": str(v) for name, v in table_versions.items()}})
    mlflow.log_dict(table_versions, "table_versions.json")


def log_encoder(state: bytes, spec: dict, example_features: list[float], registered_model: str):
    """Log the encoder as a pyfunc (any sequence length; defined as code, nothing pickled)
    and register it; returns the version."""
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp, "encoder.pt")
        weights.write_bytes(state)
        spec_path = Path(tmp, "spec.json")
        spec_path.write_text(json.dumps(spec, indent=2))
        import pandas as pd

        info = mlflow.pyfunc.log_model(
            name="encoder",
            python_model=str(REPO / "lib" / "microseg" / "model" / "pyfunc_entry.py"),
            artifacts={"weights": str(weights), "spec": str(spec_path)},
            code_paths=[str(REPO / "lib" / "microseg")],
            input_example=pd.DataFrame({"features": [example_features]}),
            pip_requirements=_requirements(),
            registered_model_name=registered_model,
        )
    return info.registered_model_version


def _requirements() -> list[str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower()] = version
    return [f"{n}=={pins[n]}" for n in ("torch", "numpy", "pandas", "mlflow") if n in pins]


@dataclass(frozen=True)
class Promotion:
    """What promotion decided: ``first`` (nothing held the alias), ``promoted``, ``kept``
    (not better) or ``refused`` (not comparable, or an unusable loss); why; and the losses computed."""

    outcome: str
    reason: str
    champion: str | None = None
    losses: dict[str, float] = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return self.outcome in ("first", "promoted")


def promote_if_better(registered_model: str, alias: str, version: int | str,
                      score: Callable[[bytes, dict], float]) -> Promotion:
    """Move ``alias`` to ``version`` when nothing holds it, or when the holder records the
    same objective, feature names and taxonomy version (``model.compat``) and ``version``
    has the lower ``score(weights, spec)``: a loss on the current validation data, computed
    for both. Encoders that differ are not compared and the alias stays; nor does it move to
    a version whose loss is not finite or is zero (no validation data, constant targets)."""
    client = MlflowClient()
    holder = alias_version(registered_model, alias)
    new = encoder_files(registered_model, version)
    if holder is None:
        loss = score(*new)
        if not _usable(loss):
            return _unusable(version, loss)
        client.set_registered_model_alias(registered_model, alias, str(version))
        return Promotion("first", f"no version held {alias}", losses={"challenger": loss})
    old = encoder_files(registered_model, holder)
    diff = compat.mismatches(new[1], old[1])
    if diff:
        return Promotion("refused", "not compared: " + compat.describe(diff, f"version {version}", f"{alias} {holder}"),
                         holder)
    losses = {"challenger": score(*new), "champion": score(*old)}
    if not _usable(losses["challenger"]):
        return _unusable(version, losses["challenger"], holder)
    better = losses["challenger"] < losses["champion"]
    if better:
        client.set_registered_model_alias(registered_model, alias, str(version))
    return Promotion("promoted" if better else "kept",
                     f"validation loss on the current data {losses['challenger']:.6g}, {alias} {holder}'s "
                     f"{losses['champion']:.6g}", holder, losses)


def _usable(loss: float) -> bool:
    return math.isfinite(loss) and loss > 0.0


def _unusable(version: int | str, loss: float, holder: str | None = None) -> Promotion:
    return Promotion("refused", f"version {version}'s validation loss is {loss:.6g}: not finite or zero, as when "
                     "the validation split is empty or the targets are constant; not promoted",
                     holder, {"challenger": loss})


def record_promotion(registered_model: str, version: int | str, promotion: Promotion) -> None:
    """The decision in the active run (tags, both losses) and in the log."""
    mlflow.set_tags({"promotion.outcome": promotion.outcome, "promotion.reason": promotion.reason[:5000],
                     "promotion.champion_version": promotion.champion or ""})
    mlflow.log_metrics({f"promotion.{who}_val_loss": v for who, v in promotion.losses.items() if math.isfinite(v)})
    level = logging.WARNING if promotion.outcome == "refused" else logging.INFO
    log.log(level, "model %s version %s: %s (%s)", registered_model, version, promotion.outcome, promotion.reason)


def trained_on(registered_model: str, table: str, version: int) -> bool:
    """Whether any version of the model was trained on ``table`` at ``version``."""
    client = MlflowClient()
    tag = f"delta.{table}.version"
    return any(client.get_run(mv.run_id).data.tags.get(tag) == str(version)
               for mv in client.search_model_versions(f"name = '{registered_model}'"))


def alias_version(registered_model: str, alias: str) -> str | None:
    """The version holding ``alias``; None when nothing does."""
    try:
        return str(MlflowClient().get_model_version_by_alias(registered_model, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


def encoder_files(registered_model: str, version: int | str) -> tuple[bytes, dict]:
    """A registered encoder version's weights (bytes) and recorded spec."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{registered_model}/{version}", dst_path=tmp))
        return next(local.rglob("encoder.pt")).read_bytes(), json.loads(next(local.rglob("spec.json")).read_text())


def load_encoder_files(registered_model: str, alias: str) -> tuple[bytes, dict, str]:
    """The aliased encoder's weights (bytes), spec and version, for broadcasting."""
    version = str(MlflowClient().get_model_version_by_alias(registered_model, alias).version)
    return *encoder_files(registered_model, version), version


def alias_status(cfg: Settings) -> list[str]:
    """One line per registered model of this project: versions, and who holds the alias."""
    client = MlflowClient()
    lines = []
    for model in client.search_registered_models(f"name LIKE '{cfg.mlflow.registered_model}%'"):
        holder = model.aliases.get(cfg.mlflow.alias)
        best = ""
        if holder is not None:
            run = client.get_run(client.get_model_version(model.name, holder).run_id)
            best = f", best_val_loss {run.data.metrics.get('best_val_loss', float('nan')):.5f}"
        latest = max((int(v.version) for v in client.search_model_versions(f"name = '{model.name}'")), default=0)
        lines.append(f"model {model.name}: {latest} version(s); {cfg.mlflow.alias} = "
                     f"{holder if holder is not None else 'none'}{best}")
    return lines or [f"model {cfg.mlflow.registered_model}: not registered yet"]
