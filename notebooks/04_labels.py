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

import sys
from pathlib import Path

# this checkout's lib/: Databricks runs a notebook in its own folder and sets no __file__
ROOT = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
sys.path.insert(0, str(ROOT / "lib"))

from microseg import notebook  # noqa: E402

# COMMAND ----------

cfg = notebook.settings(loans="source.loans", liquidity_classes="labels.liquidity_classes")

# COMMAND ----------

results = notebook.run(cfg, "labels")
