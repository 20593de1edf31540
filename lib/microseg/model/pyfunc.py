"""The encoder as an MLflow pyfunc: flat [T x F] features in (any T), embedding out."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch

from microseg.model.networks import build_model


class EncoderModel(mlflow.pyfunc.PythonModel):
    """Input column ``features`` (flat floats, T months x F features, any T); output
    column ``embedding``. Weights load with ``weights_only=True`` (no code execution)."""

    def load_context(self, context) -> None:
        spec = json.loads(Path(context.artifacts["spec"]).read_text())
        self.model = build_model(spec["model"])
        state = torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True)
        self.model.load_state_dict(state)
        self.model.eval()
        self.n_features = spec["model"]["n_features"]

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        x = np.stack([np.asarray(v, dtype=np.float32) for v in model_input["features"]])
        x = x.reshape(len(x), -1, self.n_features)
        with torch.no_grad():
            emb = self.model.embed(torch.from_numpy(x)).numpy()
        return pd.DataFrame({"embedding": list(emb)})
