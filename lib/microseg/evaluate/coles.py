"""Self-supervised peer for the evaluation: CoLES customer embeddings (arXiv 2002.08232)
from pytorch-lifestream (ptls), trained on the same monthly sequences as our encoder.

ptls is an optional extra, not in the core environment: build it with
``scripts/coles-env.sh`` and put the folder it prints on PYTHONPATH after lib. Each
customer is the sequence of its active months (84 standardised numbers per month); CoLES
samples random slices of it as positives and other customers' slices as negatives, and a
GRU (ptls's RnnSeqEncoder) learns to tell them apart. Its last hidden state over all the
customer's active months is the embedding. The learning rate (1e-2, ten times ptls's
examples) suits the few steps of a handful of epochs over a few thousand customers."""

from __future__ import annotations

import logging
import warnings
from functools import partial

import numpy as np
import torch


def available() -> bool:
    """Whether ptls (the optional extra) can be imported. Its own imports (Lightning,
    transformers, ...) are left to coles_embeddings, so that a half-built extra fails
    loudly there instead of being skipped."""
    try:
        import ptls  # noqa: F401
    except ImportError:
        return False
    return True


def _records(z: np.ndarray, active: np.ndarray) -> list[dict]:
    """ptls feature dicts: per customer its active months, a [L, F] vector sequence (the
    last month alone for a customer with none, so that no sequence is empty)."""
    out = []
    for zi, ai in zip(z, active.astype(bool)):
        months = np.flatnonzero(ai) if ai.any() else np.array([len(ai) - 1])
        out.append({"event_time": torch.from_numpy(months), "x": torch.from_numpy(zi[months])})
    return out


def coles_embeddings(x: np.ndarray, active: np.ndarray, train: np.ndarray, seed: int,
                     epochs: int = 5, hidden: int = 32) -> np.ndarray:
    """Train CoLES on the ``train`` rows of ``x`` [n, T, F] (months where ``active`` [n, T]
    is set), on CPU, deterministically for ``seed``; return embeddings [n, hidden] for all
    rows."""
    import pytorch_lightning as pl
    from ptls.data_load.utils import collate_feature_dict
    from ptls.frames import PtlsDataModule
    from ptls.frames.coles import CoLESModule, ColesDataset
    from ptls.frames.coles.split_strategy import SampleSlices
    from ptls.nn import RnnSeqEncoder, TrxEncoder
    from ptls.nn.trx_encoder.encoders import IdentityEncoder

    for name in ("pytorch_lightning", "lightning_fabric"):   # no "GPU available" banners
        logging.getLogger(name).setLevel(logging.WARNING)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    n, t, f = x.shape
    train = np.asarray(train, dtype=bool)
    seen = x[train][active[train].astype(bool)]                 # train rows' active months
    z = ((x - seen.mean(0)) / np.where(seen.std(0) > 0, seen.std(0), 1.0)).astype(np.float32)
    records = _records(z, active)

    pl.seed_everything(seed, workers=True, verbose=False)
    encoder = RnnSeqEncoder(
        trx_encoder=TrxEncoder(custom_embeddings={"x": IdentityEncoder(f)}, use_batch_norm=False),
        hidden_size=hidden, type="gru")
    module = CoLESModule(seq_encoder=encoder,
                         optimizer_partial=partial(torch.optim.Adam, lr=1e-2),
                         lr_scheduler_partial=partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.9))
    data = PtlsDataModule(
        train_data=ColesDataset([r for r, keep in zip(records, train) if keep],
                                splitter=SampleSlices(split_count=5, cnt_min=3, cnt_max=max(3, t // 2))),
        train_batch_size=64, train_num_workers=0)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, deterministic=True,
                         enable_progress_bar=False, logger=False, enable_checkpointing=False,
                         enable_model_summary=False)
    try:
        with warnings.catch_warnings():   # CoLESModule has a validation_step; we skip validation
            warnings.filterwarnings("ignore", "You defined a `validation_step` but have no `val_dataloader`")
            trainer.fit(module, data)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)   # Lightning sets it process-wide

    encoder.eval()
    with torch.no_grad():
        out = [encoder(collate_feature_dict(records[i:i + 512])) for i in range(0, n, 512)]
    return torch.cat(out).numpy()
