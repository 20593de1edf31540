"""The Databricks bundle and the notebooks: every job task runs an existing stage notebook
whose settings validate, in the order of the stage flows, on an ML runtime of the Spark 4.0
line; the notebooks are Databricks source files that also run locally as plain Python."""

import ast
import re
import runpy
from pathlib import Path

import pytest
import yaml

from microseg import notebook, pipeline
from microseg.config import load_config

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = yaml.safe_load((ROOT / "databricks.yml").read_text())
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
REFERENCE = re.compile(r"\$\{([^}]+)\}")


def values(target: str) -> dict[str, str]:
    """What the bundle's ``${...}`` references resolve to in ``target``."""
    out = {f"var.{k}": str(v["default"]) for k, v in BUNDLE["variables"].items()}
    out |= {f"var.{k}": str(v) for k, v in BUNDLE["targets"][target].get("variables", {}).items()}
    return out | {"bundle.name": BUNDLE["bundle"]["name"], "bundle.target": target}


def resolve(node, refs: dict[str, str]):
    """``node`` with every reference substituted; an unknown one raises KeyError."""
    if isinstance(node, dict):
        return {k: resolve(v, refs) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, refs) for v in node]
    return REFERENCE.sub(lambda m: refs[m.group(1)], node) if isinstance(node, str) else node


def jobs(target: str) -> dict:
    return resolve(BUNDLE["resources"]["jobs"], values(target))


def declared(path: Path) -> tuple[str | None, dict[str, str]]:
    """What a notebook runs (``notebook.run(cfg, "<target>")``) and its setting widgets
    (the keywords of ``notebook.settings``)."""
    calls = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Attribute) and getattr(n.func.value, "id", None) == "notebook"]
    runs = [c.args[1].value for c in calls if c.func.attr == "run" and isinstance(c.args[1], ast.Constant)]
    keys = {kw.arg: kw.value.value for c in calls if c.func.attr == "settings" for kw in c.keywords}
    return (runs[0] if runs else None), keys


def task_settings(job: dict, task: dict):
    """The config a task's notebook builds from the job's parameters (pushed down to every
    task, winning over the task's own) and the task's parameters."""
    params = {**task["notebook_task"].get("base_parameters", {}),
              **{p["name"]: p["default"] for p in job.get("parameters", [])}}
    _, keys = declared(ROOT / task["notebook_task"]["notebook_path"])
    unused = set(task["notebook_task"].get("base_parameters", {})) - set(keys)
    assert not unused, f"task {task['task_key']}: its notebook has no widget {unused}"
    return notebook.settings(lambda name, default, label: params.get(name, default), **keys)


def chain(tasks: list[dict]) -> list[str]:
    """Task keys in run order; each task must depend on exactly the task before it."""
    deps = {t["task_key"]: [d["task_key"] for d in t.get("depends_on", [])] for t in tasks}
    order = [key for key, before in deps.items() if not before]
    assert len(order) == 1, f"one first task expected, got {order}"
    while len(order) < len(deps):
        following = [key for key, before in deps.items() if before == [order[-1]]]
        assert len(following) == 1, f"after {order[-1]}: {following}"
        order.append(following[0])
    return order


@pytest.mark.parametrize("target", list(BUNDLE["targets"]))
def test_every_task_runs_its_stage_notebook_with_settings_that_validate(target):
    refs = values(target)
    catalog, schema = refs["var.catalog"], refs["var.schema"]
    for job in jobs(target).values():
        for task in job["tasks"]:
            path = ROOT / task["notebook_task"]["notebook_path"]
            assert path.is_file(), path
            runs, _ = declared(path)
            assert runs == task["task_key"] and runs in pipeline.STAGES
            cfg = task_settings(job, task)
            assert cfg.tables.catalog == catalog and cfg.spark.master is None
            assert cfg.tables.root == f"/Volumes/{catalog}/{schema}/{refs['var.volume']}"
            assert cfg.mlflow.registered_model == f"{catalog}.{schema}.{refs['var.model_name']}"
            assert cfg.mlflow.experiment == f"/Shared/microseg-{target}"
            assert cfg.train.use_gpu is (task["task_key"] == "train")
            if task["task_key"] == "train":
                assert cfg.train.num_processes == int(refs["var.gpu_workers"]) and not cfg.train.local_mode


def test_jobs_run_the_flows_in_order_on_the_runtime_and_nodes_they_need():
    monthly, build = jobs("prod")["microseg_monthly"], jobs("prod")["microseg_build"]
    assert chain(monthly["tasks"]) == pipeline.FLOWS["monthly"]
    assert chain(build["tasks"]) == pipeline.flow_stages(load_config("databricks"), "all")   # no generate
    for job in (monthly, build):
        clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
        for task in job["tasks"]:
            runtime = clusters[task["job_cluster_key"]]["spark_version"]
            assert re.fullmatch(r"17\.3\.x-(cpu|gpu)-ml-scala2\.13", runtime)   # 17.3 LTS ML: Spark 4.0
            assert ("gpu" in runtime) is (task["task_key"] == "train")
    gpu = {c["job_cluster_key"]: c["new_cluster"] for c in build["job_clusters"]}["gpu"]
    assert gpu["node_type_id"] == values("prod")["var.gpu_node_type"]


def test_the_monthly_schedule_is_paused_in_dev_only():
    for target, status in (("dev", "PAUSED"), ("prod", "UNPAUSED")):
        schedule = jobs(target)["microseg_monthly"]["schedule"]
        assert schedule["pause_status"] == status
        seconds, minutes, hours, day, month, weekday = schedule["quartz_cron_expression"].split()
        assert day.isdigit() and month == "*" and weekday == "?"   # once a month
    assert "schedule" not in jobs("prod")["microseg_build"]


def test_a_monthly_run_takes_its_month_and_files_from_the_job_parameters():
    job = jobs("prod")["microseg_monthly"]
    tasks = {t["task_key"]: t for t in job["tasks"]}
    assert task_settings(job, tasks["sequences"]).sequences.as_of is None   # default: the latest month
    for p in job["parameters"]:
        p["default"] = {"as_of": "2024-12", "source_path": "/Volumes/prod/microseg/files/landing/t/month=2024-12"
                        }.get(p["name"], p["default"])
    assert task_settings(job, tasks["sequences"]).sequences.as_of == "2024-12"
    assert task_settings(job, tasks["ingest"]).source.path.endswith("month=2024-12")


def test_the_databricks_env_names_unity_catalog_and_matches_the_dev_target():
    cfg = load_config("databricks")
    catalog = cfg.tables.catalog
    assert cfg.mlflow.tracking_uri == "databricks" and cfg.mlflow.registry_uri == "databricks-uc"
    assert cfg.mlflow.registered_model.split(".")[0] == catalog and len(cfg.mlflow.registered_model.split(".")) == 3
    assert cfg.tables.root.startswith(f"/Volumes/{catalog}/") and cfg.spark.master is None
    job = jobs("dev")["microseg_monthly"]
    dev = task_settings(job, job["tasks"][0])
    assert (dev.tables, dev.mlflow.registered_model) == (cfg.tables, cfg.mlflow.registered_model)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_databricks_source_whose_widgets_name_settings(path):
    text = path.read_text()
    assert text.startswith("# Databricks notebook source\n") and "\n# COMMAND ----------\n" in text
    compile(text, str(path), "exec")
    runs, keys = declared(path)
    assert runs is None or runs in pipeline.STAGES or runs in pipeline.FLOWS
    notebook.settings(**keys)   # every widget names a setting (KeyError otherwise), values valid


def test_every_stage_and_flow_has_a_notebook():
    runs = {declared(path)[0] for path in NOTEBOOKS}
    wanted = set(pipeline.FLOWS["all"]) | set(pipeline.FLOWS["monthly"]) | (set(pipeline.FLOWS) - {"all"})
    assert wanted <= runs, wanted - runs


def test_the_status_notebook_runs_locally_as_plain_python(spark, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)   # the embedded default's lakehouse folder is relative
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    runpy.run_path(str(ROOT / "notebooks" / "14_status.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "bronze.transactions" in out and "(not written yet)" in out and (tmp_path / "lakehouse").is_dir()


def test_deploy_builds_the_wheel_and_every_task_installs_it():
    artifact = BUNDLE["artifacts"]["microseg"]
    assert artifact["type"] == "whl" and artifact["path"] == "." and "--wheel-dir dist" in artifact["build"]
    for job in jobs("prod").values():
        for task in job["tasks"]:
            assert task["libraries"] == [{"whl": "./dist/*.whl"}], task["task_key"]   # and nothing else


def _locked(lock: str) -> dict[str, str]:
    pins = (line.split("==") for line in (ROOT / lock).read_text().splitlines() if "==" in line)
    return {name.lower().replace("_", "-"): version for name, version in pins if not name.startswith("#")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel the bundle's build command makes (without build isolation: offline)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--disable-pip-version-check", "--wheel-dir", str(out), str(ROOT)], check=True)
    return next(out.glob("microseg-*.whl"))


def test_the_wheel_holds_the_package_and_requires_what_the_runtime_has(wheel):
    """Installed on Databricks Runtime 17.3 LTS ML (its versions: requirements-dbr.lock) the
    wheel changes none of the runtime's libraries and brings no pyspark to shadow its own."""
    import zipfile
    from email.parser import Parser

    from packaging.requirements import Requirement

    names = zipfile.ZipFile(wheel).namelist()
    modules = {str(p.relative_to(ROOT / "lib")) for p in (ROOT / "lib" / "microseg").rglob("*.py")}
    assert modules <= set(names), modules - set(names)
    meta = Parser().parsestr(zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode())
    required = [Requirement(r) for r in meta.get_all("Requires-Dist") if "extra ==" not in r]
    assert not {r.name for r in required} & {"pyspark", "delta-spark", "petastorm", "horovod"}
    for lock in ("requirements.lock", "requirements-dbr.lock"):
        versions = _locked(lock)
        for req in required:
            name = req.name.lower().replace("_", "-")
            assert name in versions and req.specifier.contains(versions[name]), (lock, str(req))


def test_a_notebook_run_from_a_clone_imports_its_lib():
    """Without the wheel installed, a notebook's first cell falls back to the clone's lib/
    (run as Databricks runs it: in the notebook's folder, with no ``__file__``)."""
    import os
    import subprocess
    import sys

    first_cell = (ROOT / "notebooks" / "14_status.py").read_text().split("# COMMAND ----------")[1]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", first_cell + "\nprint(notebook.__file__)"], cwd=ROOT / "notebooks",
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(ROOT / "lib" / "microseg" / "notebook.py")
