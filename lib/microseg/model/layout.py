"""Where each block sits in a month's feature vector (``prep.sequences.feature_names``):
per spend class log1p(spend), spend share and log1p(count) (three blocks of C), then the
account block (log income, log outflow, signed log balance), then the calendar month
(sine and cosine of the month of the year; zero on months without activity).

>>> n_classes(3 * 4 + N_ACCOUNT + N_CALENDAR)
4
>>> x = torch.zeros(1, 3, n_features(1)); x[0, :2, -2:] = torch.tensor([[0.5, 3 ** 0.5 / 2], [0., 0.]])
>>> [round(a, 4) for a in (month_angles(x) * 6 / math.pi).tolist()[0]]   # February, then March, April
[1.0, 2.0, 3.0]
"""

from __future__ import annotations

import math

import torch

N_ACCOUNT = 3
N_CALENDAR = 2


def n_features(n_classes_: int) -> int:
    return 3 * n_classes_ + N_ACCOUNT + N_CALENDAR


def n_classes(n_features_: int) -> int:
    """The number of spend classes of a feature vector this wide; a width that does not fit
    the layout (a ``gold.sequences`` built by an older version) is an error, not a guess."""
    c, rest = divmod(n_features_ - N_ACCOUNT - N_CALENDAR, 3)
    if rest or c < 1:
        raise ValueError(f"{n_features_} features per month do not fit the layout 3 x classes + {N_ACCOUNT} "
                         f"account + {N_CALENDAR} calendar; rebuild gold.sequences with this version "
                         "(run --stage sequences)")
    return c


def account(x):
    """The account block [..., N_ACCOUNT] of features [..., F] (a tensor or an array)."""
    c = n_classes(x.shape[-1])
    return x[..., 3 * c:3 * c + N_ACCOUNT]


def month_angles(x: torch.Tensor) -> torch.Tensor:
    """[B, T] the calendar month of every position of left-aligned features [B, T, F] as an
    angle (January 0, one month 2 pi / 12), counted on from the first month (which is active,
    so it carries its month); later positions need not be active."""
    sin, cos = x[:, 0, -2], x[:, 0, -1]
    first = torch.atan2(sin, cos)
    steps = torch.arange(x.shape[1], dtype=x.dtype, device=x.device)
    return first.unsqueeze(1) + (2 * math.pi / 12) * steps.unsqueeze(0)
