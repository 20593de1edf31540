"""The encoders. Inputs are raw features [B, T, F]; scaling lives inside as buffers, so a
saved state_dict is the whole model and needs no side files.

An encoder turns a customer's months into per-month states and one customer vector (its
``embedding`` reducer); the heads of its objective (``model.objectives``) read from those.
Padding is ignored: months before a customer's first and after their last active month
are cut off (``model.batch``) and the LSTM runs over packed sequences.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from microseg.model import layout, objectives
from microseg.model.batch import Batch, left_align
from microseg.model.shape import NEUTRAL_MOMENTS, calendar_projections, reliability

N_TRAITS = 5


def activity(x: torch.Tensor) -> torch.Tensor:
    """[B, T] 1 where a month has any transaction (any feature non-zero), as in gold.sequences."""
    return (x != 0).any(dim=-1).float()


def batch_of(x: torch.Tensor, traits: torch.Tensor | None = None, trait_mask: torch.Tensor | None = None) -> Batch:
    """A left-aligned batch from raw features (traits optional: not needed to embed)."""
    traits = traits if traits is not None else x.new_zeros(*x.shape[:2], N_TRAITS)
    trait_mask = trait_mask if trait_mask is not None else x.new_zeros(x.shape[:2])
    return left_align(x, traits, trait_mask, activity(x))


class _Encoder(nn.Module):
    """Scaling buffers, the objective's heads, and ``embed`` on raw [B, T, F] features."""

    def __init__(self, spec: dict, step_width: int, embed_width: int, state_width: int | None = None):
        super().__init__()
        self.spec = spec
        self.state_width = state_width or embed_width   # the leading part of the customer vector downstream models read
        n_features = spec["n_features"]
        self.n_classes = layout.n_classes(n_features)
        self.objective = objectives.resolve(spec["objective"])
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.heads = nn.ModuleDict({
            part.replace("@", "_"): nn.Linear(step_width if objectives.is_step_part(part) else embed_width,
                                              objectives.part_width(part, N_TRAITS, self.n_classes, spec["months"],
                                                                    layout.N_ACCOUNT))
            for part in self.objective})
        if "shape" in self.objective:     # running statistics kept in training (``objectives.loss``)
            d = self.heads["shape"].out_features
            self.register_buffer("shape_var", torch.ones(d))            # each shape output's variance
            self.register_buffer("shape_halves", self._neutral_halves(d))   # the target's split-half moments

    @staticmethod
    def _neutral_halves(d: int) -> torch.Tensor:
        return torch.tensor(NEUTRAL_MOMENTS).unsqueeze(-1).repeat(1, d)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Weights saved before the split-half moments were kept load with reliability 1
        everywhere (the metric they were registered with)."""
        key = prefix + "shape_halves"
        if hasattr(self, "shape_halves") and key not in state_dict and prefix + "shape_var" in state_dict:
            state_dict[key] = self._neutral_halves(self.shape_halves.shape[1])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_scaling(self, mean, std) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def scaled_blocks(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The scaled class-share block [B, T, C] and account block [B, T, N_ACCOUNT] of raw
        features (zero where padded)."""
        c, scaled = self.n_classes, self.scale(x) * activity(x).unsqueeze(-1)
        return scaled[..., c:2 * c], layout.account(scaled)

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        steps, emb = self.encode(batch)
        return {part: self.heads[part.replace("@", "_")](steps if objectives.is_step_part(part) else emb)
                for part in self.objective}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The customer vectors of raw features [B, T, F] (any T): the customer state, in
        the ``shape_metric`` when the objective has a ``shape`` part."""
        return self.vectors(x)[0]

    def vectors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(``embed``'s vectors, the plain customer state) of raw features [B, T, F] in one
        pass: the first to segment by, the second for downstream models (a linear model
        on the state reads cash flow and spending alike; the shape metric shrinks what the
        shape head does not read). The state is the customer vector's first
        ``state_width`` values: with the ``seasonal`` read-out the last and mean hidden
        states, without the calendar projections that serve the shape head."""
        vector = self.encode(batch_of(x))[1]
        return (vector @ self.shape_metric() if "shape" in self.objective else vector), vector[:, :self.state_width]

    def shape_metric(self) -> torch.Tensor:
        """[E, min(E, D)] ``V S`` of the shape head's weights ``W = U S V^T`` ([D, E]), each
        output divided by its standard deviation and multiplied by the square root of its
        target's split-half reliability (``model.shape.reliability``): customer states
        ``h`` mapped by it lie as far apart as their predicted long-run shapes ``W h``
        (squared distance ``(h1 - h2)^T W^T W (h1 - h2)``), each dimension spreading as
        much as it is the customer's rather than the months' noise. So segments group by
        the spending behaviour the head reads from the state, not by whatever else (cash
        flow) the state also carries, and a noisy trend of a small class does not count
        as much as a steady mix; downstream models read the state itself (``vectors``). A
        constant of the weights (no gradient); columns signed so their largest entry is
        positive."""
        scale = (reliability(self.shape_halves) / self.shape_var.clamp(min=1e-12)).sqrt()
        w = self.heads["shape"].weight.detach() * scale.unsqueeze(-1)
        _, s, vt = torch.linalg.svd(w, full_matrices=False)
        v = vt.T * s
        return v * torch.sign(v.gather(0, v.abs().argmax(0, keepdim=True)))


# x hidden; the state downstream models read is at most the first two (seasonal: last and mean)
EMBEDDING_WIDTH = {"last": 1, "last_cell": 2, "pooled": 2, "seasonal": 6}


class LSTMEncoder(_Encoder):
    """An LSTM over each customer's valid months; the customer vector is the last hidden
    state (``embedding: last``), with the last cell state (``last_cell``), with the mean
    hidden state over the valid months (``pooled``), or that and the hidden states' 6- and
    12-month projections on the calendar (``seasonal``: how each state moves with the time of
    year, so a seasonal pattern is a linear read-out rather than a sum the recurrence has
    to carry to the last month).

    >>> m = LSTMEncoder({"n_features": 11, "hidden": 8, "objective": "next+shape", "months": 6})
    >>> b = batch_of(torch.rand(2, 6, 11))
    >>> m.embed(torch.rand(2, 6, 11)).shape, {k: v.shape[-1] for k, v in m(b).items()}
    (torch.Size([2, 8]), {'traits@1': 5, 'shape': 16})
    """

    sequence_output = True

    def __init__(self, spec: dict):
        spec = {"kind": "lstm", "hidden": 32, "layers": 1, "dropout": 0.0, "embedding": "last", **spec}
        hidden = spec["hidden"]
        super().__init__(spec, hidden, hidden * EMBEDDING_WIDTH[spec["embedding"]],
                         hidden * min(EMBEDDING_WIDTH[spec["embedding"]], 2))
        self.lstm = nn.LSTM(spec["n_features"], hidden, num_layers=spec["layers"], batch_first=True,
                            dropout=spec["dropout"] if spec["layers"] > 1 else 0.0)

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        packed = pack_padded_sequence(self.scale(batch.x) * batch.valid.unsqueeze(-1), batch.lengths.cpu(),
                                      batch_first=True, enforce_sorted=False)
        out, (h, c) = self.lstm(packed)
        steps, _ = pad_packed_sequence(out, batch_first=True, total_length=batch.x.shape[1])
        last = h[-1]
        if self.spec["embedding"] == "last_cell":
            return steps, torch.cat([last, c[-1]], dim=-1)
        if self.spec["embedding"] == "last":
            return steps, last
        n = batch.lengths.unsqueeze(-1).to(steps.dtype)
        pooled = [last, steps.sum(1) / n]
        if self.spec["embedding"] == "seasonal":
            pooled += calendar_projections(steps, layout.month_angles(batch.x), n)
        return steps, torch.cat(pooled, dim=-1)


class FeedForwardEncoder(_Encoder):
    """The window's aggregated features in (mean and standard deviation over the valid
    months), ``layers`` hidden layers; the customer vector is the last hidden layer's
    activations. Only customer-level objective parts apply (no per-month states).

    >>> m = FeedForwardEncoder({"n_features": 11, "hidden": 8, "objective": "window_traits", "months": 6})
    >>> m.embed(torch.rand(2, 6, 11)).shape
    torch.Size([2, 8])
    """

    sequence_output = False

    def __init__(self, spec: dict):
        spec = {"kind": "feedforward", "hidden": 32, "layers": 1, "dropout": 0.0, **spec}
        steps = [p for p in objectives.resolve(spec["objective"]) if objectives.is_step_part(p)]
        if steps:
            raise ValueError(f"the feed-forward encoder has no per-month states for {steps}; "
                             "use customer-level parts (window_traits, shape, reconstruct)")
        super().__init__(spec, spec["hidden"], spec["hidden"])
        blocks, width = [], 2 * spec["n_features"]
        for i in range(spec["layers"]):
            if i and spec["dropout"]:
                blocks.append(nn.Dropout(spec["dropout"]))
            blocks += [nn.Linear(width, spec["hidden"]), nn.ReLU()]
            width = spec["hidden"]
        self.body = nn.Sequential(*blocks)

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        v = batch.valid.unsqueeze(-1)
        n = v.sum(1).clamp(min=1.0)
        x = self.scale(batch.x) * v
        mean = x.sum(1) / n
        std = (((x - mean.unsqueeze(1)) * v) ** 2).sum(1).div(n).sqrt()
        return x, self.body(torch.cat([mean, std], dim=-1))


MODELS = {"lstm": LSTMEncoder, "feedforward": FeedForwardEncoder}


def build_model(spec: dict) -> _Encoder:
    return MODELS[spec.get("kind", "lstm")](spec)
