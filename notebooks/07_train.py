# Databricks notebook source
# MAGIC %md
# MAGIC # 07 Train the encoder
# MAGIC Train the encoder on the recorded sequences version with the configured launcher, log the run
# MAGIC to MLflow, register the model, and move the alias when the validation loss beats the holder's.
# MAGIC On a GPU cluster set `use_gpu` to true (NCCL, one GPU per rank).
# MAGIC
# MAGIC Widgets: `env`, `conf`, `overrides` (`key=value; ...`), and one per setting:
# MAGIC - `kind`: `model.kind`
# MAGIC - `objective`: `model.objective`
# MAGIC - `epochs`: `model.epochs`
# MAGIC - `launcher`: `train.launcher`
# MAGIC - `num_processes`: `train.num_processes`
# MAGIC - `local_mode`: `train.local_mode`
# MAGIC - `use_gpu`: `train.use_gpu`
# MAGIC
# MAGIC Locally: `python notebooks/07_train.py` runs it on the embedded default.

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
    kind="model.kind",
    objective="model.objective",
    epochs="model.epochs",
    launcher="train.launcher",
    num_processes="train.num_processes",
    local_mode="train.local_mode",
    use_gpu="train.use_gpu",
)

# COMMAND ----------

results = notebook.run(cfg, "train")
