"""Spark side of the evaluation: pick a deterministic sample of customers and bring their
vectors, segments, labels and sequences to the driver.

Everything here is bounded by ``evaluate.sample_rows`` customers (plus per-segment
tables of k rows), so the driver holds a sample, never a full table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def sample_ids(sequences: DataFrame, rows: int, seed: int) -> DataFrame:
    """customer_id, split of about ``rows`` eligible customers, chosen by a seeded hash
    (the same customers every run)."""
    eligible = sequences.where("eligible").select("customer_id", "split")
    total = eligible.count()
    fraction = min(1.0, rows / max(total, 1))
    u = F.pmod(F.xxhash64("customer_id", F.lit(seed + 1)), F.lit(1_000_000)) / 1_000_000.0
    return eligible.where(u < fraction)


def to_matrix(pdf: pd.DataFrame, column: str) -> np.ndarray:
    """A pandas column of equal-length arrays -> a float matrix (rows x dims)."""
    return np.stack(pdf[column].to_numpy()).astype(np.float64) if len(pdf) else np.zeros((0, 0))
