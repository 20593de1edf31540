# Databricks notebook source
# MAGIC %md
# MAGIC # 01 Generate a synthetic bank
# MAGIC Monthly landing files of transactions, a loan book, and the planted ground truth (`raw.ground_truth`,
# MAGIC which no stage reads). For trying the pipeline without a bank's data; skip it for a real source.
# MAGIC
# MAGIC Widgets: `env`, `conf`, `overrides` (`key=value; ...`), and one per setting:
# MAGIC - `customers`: `generator.customers`
# MAGIC - `months`: `generator.months`
# MAGIC - `start_month`: `generator.start_month`
# MAGIC - `bad_rows`: `generator.bad_rows`
# MAGIC
# MAGIC Locally: `python notebooks/01_generate.py` runs it on the embedded default.

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

cfg = notebook.settings(
    customers="generator.customers",
    months="generator.months",
    start_month="generator.start_month",
    bad_rows="generator.bad_rows",
)

# COMMAND ----------

results = notebook.run(cfg, "generate")
