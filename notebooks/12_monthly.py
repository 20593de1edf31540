# Databricks notebook source
# MAGIC %md
# MAGIC # 12 The monthly run
# MAGIC What the scheduled job runs for a new month: ingest its files, recompute the sequences up to
# MAGIC `as_of`, embed with the champion, assign to the stored centroids, count migrations. Each output
# MAGIC is replaced for its month only, so running a month again changes nothing. Backfill a month by
# MAGIC setting `as_of` (YYYY-MM) and `source_path` (that month's files).
# MAGIC
# MAGIC Widgets: `env`, `conf`, `overrides` (`key=value; ...`), and one per setting:
# MAGIC - `as_of`: `sequences.as_of`
# MAGIC - `source_path`: `source.path`
# MAGIC
# MAGIC Locally: `python notebooks/12_monthly.py` runs it on the embedded default.

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

cfg = notebook.settings(as_of="sequences.as_of", source_path="source.path")

# COMMAND ----------

results = notebook.run(cfg, "monthly")
