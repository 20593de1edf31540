# Databricks notebook source
# MAGIC %md
# MAGIC # 14 Status
# MAGIC Each table's current Delta version and last write, and the registered models with the
# MAGIC version that holds the alias (champion): what `microseg status` prints.
# MAGIC
# MAGIC Widgets: `env`, `conf`, `overrides` (`key=value; ...`).
# MAGIC Locally: `python notebooks/14_status.py`.

# COMMAND ----------

try:   # the installed package: the bundle's tasks install its wheel
    from microseg import notebook
except ModuleNotFoundError:   # run from a clone: its lib/ (Databricks sets no __file__)
    import sys
    from pathlib import Path

    ROOT = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
    sys.path.insert(0, str(ROOT / "lib"))
    from microseg import notebook
from microseg.cli import status_lines  # noqa: E402

# COMMAND ----------

cfg = notebook.settings()

# COMMAND ----------

print("\n".join(status_lines(cfg)))
