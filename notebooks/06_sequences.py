# Databricks notebook source
# MAGIC %md
# MAGIC # 06 Sequences
# MAGIC Per customer, the monthly features and traits of the window up to the customer's reference month
# MAGIC (`as_of`, or the month their loan was granted), masks, and the train/validation/test split
# MAGIC (`gold.sequences`), and the feature scaling (`gold.feature_stats`).
# MAGIC
# MAGIC Widgets: `env`, `conf`, `overrides` (`key=value; ...`), and one per setting:
# MAGIC - `as_of`: `sequences.as_of`
# MAGIC - `window_months`: `sequences.window_months`
# MAGIC - `reference`: `sequences.reference` (`as_of` or `loan_date`)
# MAGIC
# MAGIC Locally: `python notebooks/06_sequences.py` runs it on the embedded default.

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
    as_of="sequences.as_of",
    window_months="sequences.window_months",
    reference="sequences.reference",
)

# COMMAND ----------

results = notebook.run(cfg, "sequences")
