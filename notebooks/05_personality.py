# Databricks notebook source
# MAGIC %md
# MAGIC # 05 Spending personality
# MAGIC Big Five traits per customer and month from the taxonomy's coefficients
# MAGIC (`gold.spending_personality`).
# MAGIC
# MAGIC Widgets: `env`, `conf`, `overrides` (`key=value; ...`), and one per setting:
# MAGIC - `taxonomy`: `taxonomy`
# MAGIC
# MAGIC Locally: `python notebooks/05_personality.py` runs it on the embedded default.

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

cfg = notebook.settings(taxonomy="taxonomy")

# COMMAND ----------

results = notebook.run(cfg, "personality")
