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

import sys
from pathlib import Path

# this checkout's lib/: Databricks runs a notebook in its own folder and sets no __file__
ROOT = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
sys.path.insert(0, str(ROOT / "lib"))

from microseg import notebook  # noqa: E402

# COMMAND ----------

cfg = notebook.settings(kind="model.kind", features="segment.features")

# COMMAND ----------

results = notebook.run(cfg, "assign")
