# Databricks notebook source
# MAGIC %md
# MAGIC # 09 Segment
# MAGIC Fit coarse segments, then micro-segments inside each (k by silhouette unless set), store
# MAGIC both levels' centroids with the model version, assign everyone and flag a degenerate result
# MAGIC (`gold.segment_centroids`, `gold.segments`, `gold.segment_profiles`).
# MAGIC
# MAGIC Widgets: `env`, `conf`, `overrides` (`key=value; ...`), and one per setting:
# MAGIC - `kind`: `model.kind`
# MAGIC - `features`: `segment.features`
# MAGIC - `coarse_k`: `segment.coarse_k`
# MAGIC - `k`: `segment.k` (micro-segments per coarse segment)
# MAGIC
# MAGIC Locally: `python notebooks/09_segment.py` runs it on the embedded default.

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

cfg = notebook.settings(kind="model.kind", features="segment.features", coarse_k="segment.coarse_k",
                        k="segment.k")

# COMMAND ----------

results = notebook.run(cfg, "segment")
