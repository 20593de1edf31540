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

try:   # the installed package: the bundle's tasks install its wheel
    from microseg import notebook
except ModuleNotFoundError:   # run from a clone: its lib/ (Databricks sets no __file__)
    import sys
    from pathlib import Path

    ROOT = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
    sys.path.insert(0, str(ROOT / "lib"))
    from microseg import notebook

# COMMAND ----------

cfg = notebook.settings(kind="model.kind")

# COMMAND ----------

results = notebook.run(cfg, "embed")
