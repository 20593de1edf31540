# Databricks notebook source
# MAGIC %md
# MAGIC # 04 Labels
# MAGIC Loan default (from the loan book) and the liquidity index and class per customer
# MAGIC (`silver.customer_labels`).
# MAGIC
# MAGIC Widgets: `env`, `conf`, `overrides` (`key=value; ...`), and one per setting:
# MAGIC - `loans`: `source.loans`
# MAGIC - `liquidity_classes`: `labels.liquidity_classes`
# MAGIC
# MAGIC Locally: `python notebooks/04_labels.py` runs it on the embedded default.

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

cfg = notebook.settings(loans="source.loans", liquidity_classes="labels.liquidity_classes")

# COMMAND ----------

results = notebook.run(cfg, "labels")
