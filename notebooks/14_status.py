# Databricks notebook source
# MAGIC %md
# MAGIC # 14 Status
# MAGIC Each table's current Delta version and last write, and the registered models with the
# MAGIC version that holds the alias (champion): what `microseg status` prints.
# MAGIC
# MAGIC Widgets: `env`, `conf`, `overrides` (`key=value; ...`).
# MAGIC Locally: `python notebooks/14_status.py`.

# COMMAND ----------

import sys
from pathlib import Path

# this checkout's lib/: Databricks runs a notebook in its own folder and sets no __file__
ROOT = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
sys.path.insert(0, str(ROOT / "lib"))

from microseg import notebook  # noqa: E402
from microseg.cli import status_lines  # noqa: E402

# COMMAND ----------

cfg = notebook.settings()

# COMMAND ----------

print("\n".join(status_lines(cfg)))
