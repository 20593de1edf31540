"""The bespoke sequence model: an LSTM trained end-to-end on one task's label (the same
network as the encoder, read out at the last month, cross-entropy on the classes)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from microseg.evaluate.fit import fit
from microseg.model.networks import LSTMEncoder


def lstm_predictor(scaling: tuple[list[float], list[float]], hidden: int, epochs: int, seed: int,
                   batch_size: int = 64, learning_rate: float = 0.005
                   ) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """fit on (x_train [n, T, F], y_train), return class probabilities for x_test."""
    cross_entropy = nn.CrossEntropyLoss()

    def predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        torch.manual_seed(seed)
        model = LSTMEncoder(x_train.shape[2], hidden=hidden, n_targets=int(y_train.max()) + 1)
        model.set_scaling(*scaling)
        fit(model, (x_train.astype(np.float32), y_train.astype(np.int64)),
            lambda m, x, y: cross_entropy(m(x)[:, -1], y), epochs, batch_size, learning_rate, seed)
        with torch.inference_mode():
            logits = model(torch.from_numpy(x_test.astype(np.float32)))[:, -1]
        return torch.softmax(logits, -1).numpy()
    return predict
