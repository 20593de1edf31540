# Databricks notebook source
# MAGIC %md
# MAGIC # 03 Aggregate
# MAGIC Monthly spend per customer and transaction class (`silver.monthly_spend`) and monthly account
# MAGIC totals: income, outflow, end balance (`silver.monthly_account`).
# MAGIC
# MAGIC Widgets: `env`, `conf`, `overrides` (`key=value; ...`).
# MAGIC Locally: `python notebooks/03_aggregate.py` runs it on the embedded default.

# COMMAND ----------

try:   # the installed package: the bundle's tasks install its wheel
    from microseg import notebook
except ModuleNotFoundError:   # run from a clone: its lib/ (Databricks sets no __file__)
    import sys
    from pathlib import Path

    ROOT = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
    sys.path.insert(0, str(ROOT / "lib"))
    from microseg import notebook

# COMMAND ----------

cfg = notebook.settings()

# COMMAND ----------

results = notebook.run(cfg, "aggregate")
