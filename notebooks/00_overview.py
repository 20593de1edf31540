# Databricks notebook source
# MAGIC %md
# MAGIC # microseg: the whole pipeline
# MAGIC Runs every stage in order through the same stage registry as `jobs/` and the CLI.
# MAGIC On Databricks, the cluster's SparkSession and the `databricks` config are used; run
# MAGIC locally (`python notebooks/00_overview.py`), it uses the embedded default.

# COMMAND ----------

import sys
from pathlib import Path

try:
    here = Path(__file__).resolve().parents[1]
except NameError:  # Databricks: the repo root is the working directory's parent
    here = Path.cwd().parent
sys.path.insert(0, str(here / "lib"))

from microseg import pipeline  # noqa: E402
from microseg.config import load_config  # noqa: E402

try:
    dbutils  # noqa: F821, B018  (defined on Databricks)
    dbutils.widgets.text("env", "local")  # noqa: F821
    dbutils.widgets.text("stage", "all")  # noqa: F821
    ENV, STAGE = dbutils.widgets.get("env"), dbutils.widgets.get("stage")  # noqa: F821
except NameError:
    ENV, STAGE = "local", "all"

# COMMAND ----------

ctx = pipeline.Context.create(load_config(ENV))
results = pipeline.run_all(ctx) if STAGE == "all" else {STAGE: pipeline.run_stage(STAGE, ctx)}

# COMMAND ----------

for name, out in results.items():
    print(f"{name:12s} {out['seconds']:7.1f} s")
