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

try:   # the installed package: the bundle's tasks install its wheel
    from microseg import notebook
except ModuleNotFoundError:   # run from a clone: its lib/ (Databricks sets no __file__)
    import sys
    from pathlib import Path

    ROOT = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
    sys.path.insert(0, str(ROOT / "lib"))
    from microseg import notebook

# COMMAND ----------

cfg = notebook.settings(sample_rows="evaluate.sample_rows")

# COMMAND ----------

results = notebook.run(cfg, "report")
