# Databricks notebook source
# MAGIC %md
# MAGIC # 11 Summary
# MAGIC What was built and where: segment sizes, the tables, the MLflow store; written to
# MAGIC `reports/summary.md` under the lakehouse root.
# MAGIC
# MAGIC Widgets: `env`, `conf`, `overrides` (`key=value; ...`).
# MAGIC Locally: `python notebooks/11_summary.py` runs it on the embedded default.

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

results = notebook.run(cfg, "summary")
