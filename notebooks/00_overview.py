# Databricks notebook source
# MAGIC %md
# MAGIC # microseg: micro-segments of bank customers
# MAGIC Raw transactions become monthly per-customer sequences in Delta tables; every transaction class
# MAGIC carries Big Five coefficients, so each customer has a monthly spending personality; an LSTM learns
# MAGIC to predict it, and its hidden state, computed for every customer, is clustered into segments.
# MAGIC
# MAGIC ```
# MAGIC generate -> ingest -> aggregate -> labels -> personality -> sequences -> train -> embed -> segment -> summary
# MAGIC monthly:    ingest -> aggregate -> labels -> personality -> sequences -> embed -> assign -> summary
# MAGIC report:     compare -> evaluate -> render
# MAGIC ```
# MAGIC
# MAGIC One notebook per stage (`01_generate` ... `11_summary`), `12_monthly`, `13_report` and `14_status`
# MAGIC call the same stage registry (`lib/microseg/pipeline.py`) as `jobs/`, the CLI and the bundle's jobs.
# MAGIC This one runs a flow or one stage: widget `run` (`all`, `monthly`, `report` or a stage name), and
# MAGIC `env`, `conf`, `overrides` (`key=value; ...`). On Databricks `env` defaults to `databricks`;
# MAGIC locally (`python notebooks/00_overview.py`) to the embedded default, `local`.

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

target = notebook.widget("run", "all", "a flow (all, monthly, report) or one stage")
cfg = notebook.settings()

# COMMAND ----------

results = notebook.run(cfg, target)
