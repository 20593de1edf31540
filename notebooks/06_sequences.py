# Databricks notebook source
# MAGIC %md
# MAGIC # 06 Sequences
# MAGIC Per customer, the monthly features and trait targets of the window up to `as_of`, masks, and the
# MAGIC train/validation/test split (`gold.sequences`), and the feature scaling (`gold.feature_stats`).
# MAGIC
# MAGIC Widgets: `env`, `conf`, `overrides` (`key=value; ...`), and one per setting:
# MAGIC - `as_of`: `sequences.as_of`
# MAGIC - `window_months`: `sequences.window_months`
# MAGIC - `target`: `sequences.target`
# MAGIC
# MAGIC Locally: `python notebooks/06_sequences.py` runs it on the embedded default.

# COMMAND ----------

import sys
from pathlib import Path

# this checkout's lib/: Databricks runs a notebook in its own folder and sets no __file__
ROOT = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
sys.path.insert(0, str(ROOT / "lib"))

from microseg import notebook  # noqa: E402

# COMMAND ----------

cfg = notebook.settings(
    as_of="sequences.as_of",
    window_months="sequences.window_months",
    target="sequences.target",
)

# COMMAND ----------

results = notebook.run(cfg, "sequences")
