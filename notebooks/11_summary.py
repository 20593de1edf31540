# Databricks notebook source
# MAGIC %md
# MAGIC # 11 Summary
# MAGIC What was built and where: segment sizes, the tables, the MLflow store; written to
# MAGIC `reports/summary.md` under the lakehouse root.
# MAGIC
# MAGIC Widgets: `env`, `conf`, `overrides` (`key=value; ...`).
# MAGIC Locally: `python notebooks/11_summary.py` runs it on the embedded default.

# COMMAND ----------

import sys
from pathlib import Path

# this checkout's lib/: Databricks runs a notebook in its own folder and sets no __file__
ROOT = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
sys.path.insert(0, str(ROOT / "lib"))

from microseg import notebook  # noqa: E402

# COMMAND ----------

cfg = notebook.settings()

# COMMAND ----------

results = notebook.run(cfg, "summary")
