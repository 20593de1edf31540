"""The bespoke sequence model: an LSTM trained end-to-end on one task's label (the encoder's
network, packed over each customer's valid months, with a linear read-out of the classes from
the customer vector, cross-entropy on the classes). Its scaling is given, not fitted here: the
features' means and standard deviations over the training split (no labels in them)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from microseg.evaluate.encoders import capped
from microseg.evaluate.fit import fit
from microseg.model.networks import LSTMEncoder


class _Classifier(nn.Module):
    def __init__(self, encoder: LSTMEncoder, n_classes: int):
        super().__init__()
        self.encoder = encoder
        self.out = nn.Linear(encoder.spec["hidden"], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.encoder.embed(x))


def lstm_predictor(scaling: tuple[list[float], list[float]], hidden: int, epochs: int, seed: int,
                   batch_size: int = 64, learning_rate: float = 0.005, max_rows: int | None = None
                   ) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """fit on (x_train [n, T, F], y_train coded 0..K-1; at most ``max_rows`` of them, a
    seeded pick), return class probabilities for x_test."""
    cross_entropy = nn.CrossEntropyLoss()

    def predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        if max_rows is not None:
            keep = capped(np.ones(len(x_train), dtype=bool), max_rows, seed)
            x_train, y_train = x_train[keep], y_train[keep]
        torch.manual_seed(seed)
        n, months, n_features = x_train.shape
        encoder = LSTMEncoder({"n_features": n_features, "months": months, "hidden": hidden,
                               "objective": "window_traits"})   # its objective head stays unused
        encoder.set_scaling(*scaling)
        model = _Classifier(encoder, int(y_train.max()) + 1)
        fit(model, (x_train.astype(np.float32), y_train.astype(np.int64)),
            lambda m, x, y: cross_entropy(m(x), y), epochs, batch_size, learning_rate, seed)
        with torch.inference_mode():
            return torch.softmax(model(torch.from_numpy(x_test.astype(np.float32))), -1).numpy()
    return predict
