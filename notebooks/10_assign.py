# Databricks notebook source
# MAGIC %md
# MAGIC # 10 Assign
# MAGIC The monthly step: assign every customer to the stored centroids of the champion's version (no
# MAGIC refit), profile the segments, count migrations since last month (`gold.segment_migration`).
# MAGIC
# MAGIC Widgets: `env`, `conf`, `overrides` (`key=value; ...`), and one per setting:
# MAGIC - `kind`: `model.kind`
# MAGIC - `features`: `segment.features`
# MAGIC
# MAGIC Locally: `python notebooks/10_assign.py` runs it on the embedded default.

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

cfg = notebook.settings(kind="model.kind", features="segment.features")

# COMMAND ----------

results = notebook.run(cfg, "assign")
