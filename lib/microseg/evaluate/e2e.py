"""The bespoke sequence model: an LSTM trained end-to-end on one task's label (the same
network as the encoder, read out at the last month, cross-entropy on the classes)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from microseg.model.networks import LSTMEncoder


def lstm_predictor(scaling: tuple[list[float], list[float]], hidden: int, epochs: int, seed: int,
                   batch_size: int = 64, learning_rate: float = 0.005
                   ) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """fit on (x_train [n, T, F], y_train), return class probabilities for x_test."""
    def predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        torch.manual_seed(seed)
        n_classes = int(y_train.max()) + 1
        model = LSTMEncoder(x_train.shape[2], hidden=hidden, n_targets=n_classes)
        model.set_scaling(*scaling)
        opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
        x, y = torch.from_numpy(x_train.astype(np.float32)), torch.from_numpy(y_train.astype(np.int64))
        rng = np.random.default_rng(seed)
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        for _ in range(epochs):
            order = rng.permutation(len(x))
            for i in range(0, len(order), batch_size):
                idx = torch.from_numpy(order[i:i + batch_size])
                opt.zero_grad()
                loss_fn(model(x[idx])[:, -1], y[idx]).backward()
                opt.step()
        model.eval()
        with torch.inference_mode():
            logits = model(torch.from_numpy(x_test.astype(np.float32)))[:, -1]
        return torch.softmax(logits, -1).numpy()
    return predict
