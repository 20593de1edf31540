# Databricks notebook source
# MAGIC %md
# MAGIC # 08 Embed
# MAGIC Embed every customer with the aliased encoder, broadcast once to a vectorised Arrow UDF
# MAGIC (`gold.embeddings`).
# MAGIC
# MAGIC Widgets: `env`, `conf`, `overrides` (`key=value; ...`), and one per setting:
# MAGIC - `kind`: `model.kind`
# MAGIC
# MAGIC Locally: `python notebooks/08_embed.py` runs it on the embedded default.

# COMMAND ----------

import sys
from pathlib import Path

# this checkout's lib/: Databricks runs a notebook in its own folder and sets no __file__
ROOT = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
sys.path.insert(0, str(ROOT / "lib"))

from microseg import notebook  # noqa: E402

# COMMAND ----------

cfg = notebook.settings(kind="model.kind")

# COMMAND ----------

results = notebook.run(cfg, "embed")
