# Databricks notebook source
# MAGIC %md
# MAGIC # 03 Aggregate
# MAGIC Monthly spend per customer and transaction class (`silver.monthly_spend`) and monthly account
# MAGIC totals: income, outflow, end balance (`silver.monthly_account`).
# MAGIC
# MAGIC Widgets: `env`, `conf`, `overrides` (`key=value; ...`).
# MAGIC Locally: `python notebooks/03_aggregate.py` runs it on the embedded default.

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

results = notebook.run(cfg, "aggregate")
