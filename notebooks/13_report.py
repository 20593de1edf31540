# Databricks notebook source
# MAGIC %md
# MAGIC # 13 The evaluation report
# MAGIC Build the comparison variants (feed-forward encoder, raw traits), evaluate segment quality and
# MAGIC downstream tasks against bespoke models, and write the HTML report, logged to MLflow.
# MAGIC
# MAGIC Widgets: `env`, `conf`, `overrides` (`key=value; ...`), and one per setting:
# MAGIC - `sample_rows`: `evaluate.sample_rows`
# MAGIC
# MAGIC Locally: `python notebooks/13_report.py` runs it on the embedded default.

# COMMAND ----------

import sys
from pathlib import Path

# this checkout's lib/: Databricks runs a notebook in its own folder and sets no __file__
ROOT = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
sys.path.insert(0, str(ROOT / "lib"))

from microseg import notebook  # noqa: E402

# COMMAND ----------

cfg = notebook.settings(sample_rows="evaluate.sample_rows")

# COMMAND ----------

results = notebook.run(cfg, "report")
