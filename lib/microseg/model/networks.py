"""The personality models. Inputs are raw features; scaling lives inside as buffers,
so a saved state_dict is the whole model and needs no side files."""

from __future__ import annotations

import torch
from torch import nn


class _Scaled(nn.Module):
    """Feature scaling as buffers: fitted statistics travel inside the state_dict."""

    def __init__(self, n_features: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def set_scaling(self, mean, std) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class LSTMEncoder(_Scaled):
    """Monthly sequence in, 5 trait scores per month out (many-to-many).

    ``embed`` returns the last hidden state of the top layer (the customer's features),
    with the last cell state appended when ``embed_cell`` is set.

    >>> m = LSTMEncoder(n_features=4, hidden=8)
    >>> m(torch.zeros(2, 6, 4)).shape, m.embed(torch.zeros(2, 6, 4)).shape
    (torch.Size([2, 6, 5]), torch.Size([2, 8]))
    """

    sequence_output = True

    def __init__(self, n_features: int, hidden: int = 32, layers: int = 1, dropout: float = 0.0,
                 n_targets: int = 5, kind: str = "lstm", embed_cell: bool = False):
        super().__init__(n_features)
        self.spec = {"kind": "lstm", "n_features": n_features, "hidden": hidden, "layers": layers,
                     "dropout": dropout, "n_targets": n_targets, "embed_cell": embed_cell}
        self.lstm = nn.LSTM(n_features, hidden, num_layers=layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(hidden, n_targets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self._scale(x))
        return self.head(out)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, c) = self.lstm(self._scale(x))
        return torch.cat([h[-1], c[-1]], dim=-1) if self.spec["embed_cell"] else h[-1]


class FeedForwardEncoder(_Scaled):
    """The window's aggregated features in (mean and standard deviation over the months),
    the window's mean trait scores out; ``embed`` is the last hidden layer's activations.

    >>> m = FeedForwardEncoder(n_features=4, hidden=8)
    >>> m(torch.zeros(2, 6, 4)).shape, m.embed(torch.zeros(2, 6, 4)).shape
    (torch.Size([2, 5]), torch.Size([2, 8]))
    """

    sequence_output = False

    def __init__(self, n_features: int, hidden: int = 32, layers: int = 1, dropout: float = 0.0,
                 n_targets: int = 5, kind: str = "feedforward", embed_cell: bool = False):
        super().__init__(n_features)
        self.spec = {"kind": "feedforward", "n_features": n_features, "hidden": hidden, "layers": layers,
                     "dropout": dropout, "n_targets": n_targets}
        blocks, width = [], 2 * n_features
        for i in range(layers):                     # ``layers`` hidden layers of ``hidden`` units
            if i and dropout:
                blocks.append(nn.Dropout(dropout))
            blocks += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(hidden, n_targets)

    def _aggregate(self, x: torch.Tensor) -> torch.Tensor:
        x = self._scale(x)
        return torch.cat([x.mean(dim=1), x.std(dim=1, unbiased=False)], dim=-1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self._aggregate(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


MODELS = {"lstm": LSTMEncoder, "feedforward": FeedForwardEncoder}


def build_model(spec: dict) -> nn.Module:
    return MODELS[spec.get("kind", "lstm")](**spec)
