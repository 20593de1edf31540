# Databricks notebook source
# MAGIC %md
# MAGIC # 02 Ingest
# MAGIC Read the configured source, MERGE the valid rows into `bronze.transactions` on (source, txn_id),
# MAGIC and put every rejected row, verbatim and with its reason, in `bronze.quarantine`.
# MAGIC
# MAGIC Widgets: `env`, `conf`, `overrides` (`key=value; ...`), and one per setting:
# MAGIC - `adapter`: `source.adapter`
# MAGIC - `source_path`: `source.path`
# MAGIC - `mapping`: `source.mapping`
# MAGIC
# MAGIC Locally: `python notebooks/02_ingest.py` runs it on the embedded default.

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
    adapter="source.adapter",
    source_path="source.path",
    mapping="source.mapping",
)

# COMMAND ----------

results = notebook.run(cfg, "ingest")
