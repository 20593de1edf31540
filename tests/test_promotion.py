"""Promotion compares like with like: the alias moves only to a version that scores better
than the champion on the same validation data, and never across objectives, feature sets
or taxonomy versions. Real MLflow (SQLite under the test's folder), real encoders."""

import mlflow
import numpy as np
import pytest
import torch

from microseg import tracking
from microseg.config import load_config
from microseg.model import layout, objectives
from microseg.model.data import to_batch
from microseg.model.networks import LSTMEncoder
from microseg.model.train import state_bytes
from microseg.stages.model import scorer

T, C = 6, 2
F = layout.n_features(C)
RECORD = {"objective": {"traits@0": 1.0}, "feature_names": [f"f{i}" for i in range(F)], "taxonomy_version": "t1"}


def _batch(seed: int, n: int = 256) -> dict:
    """Months whose traits are a fixed linear map of their features (learnable)."""
    x = np.random.default_rng(seed).normal(size=(n, T, F)).astype("float32")
    traits = x @ np.random.default_rng(0).normal(size=(F, 5)).astype("float32") / 2
    return {"features": torch.from_numpy(x.reshape(n, -1)), "traits": torch.from_numpy(traits.reshape(n, -1)),
            "trait_mask": torch.ones(n, T)}


VALIDATION = [_batch(1), _batch(2)]


def _encoder(objective="current", steps=0, seed=0) -> LSTMEncoder:
    """An LSTM on the task, trained ``steps`` Adam steps (0: as initialised)."""
    torch.manual_seed(seed)
    model = LSTMEncoder({"n_features": F, "hidden": 8, "months": T, "objective": objective})
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    train = to_batch(_batch(10), T)
    for _ in range(steps):
        loss, _ = objectives.loss(model, train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tracking.setup(load_config("local", overrides={"tables.root": str(tmp_path_factory.mktemp("mlflow"))}))
    yield
    mlflow.set_tracking_uri(None)


@pytest.fixture
def registry(store, request):
    """A registered model name of this test's own in the module's store, and the alias."""
    return "promotion-" + request.node.name.replace("[", "-").strip("]"), "champion"


def _register(registry, model: LSTMEncoder, logged_loss: float, **record) -> str:
    """Register ``model`` with its recorded spec; its run logs ``best_val_loss`` as training would."""
    with mlflow.start_run():
        mlflow.log_metric("best_val_loss", logged_loss)
        spec = {"model": model.spec, "months": T, **RECORD, **record}
        return str(tracking.log_encoder(state_bytes(model), spec, [0.0] * (T * F), registry[0]))


def _promote(registry, version: str, calls: list | None = None) -> tracking.Promotion:
    """Promotion with the real scorer on ``VALIDATION``; ``calls`` collects the specs it scores."""
    score, calls = scorer(lambda: iter(VALIDATION), T), [] if calls is None else calls
    return tracking.promote_if_better(*registry, version, lambda w, s: calls.append(s) or score(w, s))


def _holder(registry) -> str | None:
    return tracking.alias_version(*registry)


def test_the_first_version_takes_the_alias(registry):
    promotion = _promote(registry, _register(registry, _encoder(), 0.5))
    assert promotion.outcome == "first" and promotion.promoted
    assert _holder(registry) == "1"


def test_a_better_challenger_on_the_same_data_takes_the_alias_and_a_worse_one_does_not(registry):
    # the champion's run logged a tiny loss (as a trivial target would): it does not count
    _promote(registry, _register(registry, _encoder(), 1e-4))
    better = _promote(registry, _register(registry, _encoder(steps=150), 0.9))
    assert better.outcome == "promoted" and better.champion == "1"
    assert better.losses["challenger"] < 0.5 * better.losses["champion"]
    assert _holder(registry) == "2"
    worse = _promote(registry, _register(registry, _encoder(steps=5, seed=1), 1e-5))
    assert worse.outcome == "kept" and not worse.promoted and worse.champion == "2"
    assert worse.losses["challenger"] > worse.losses["champion"] == pytest.approx(better.losses["challenger"])
    assert _holder(registry) == "2"


def test_an_equal_challenger_does_not_take_the_alias(registry):
    _promote(registry, _register(registry, _encoder(steps=20), 0.5))
    same = _promote(registry, _register(registry, _encoder(steps=20), 0.4))
    assert same.outcome == "kept" and same.losses["challenger"] == same.losses["champion"]
    assert _holder(registry) == "1"


@pytest.mark.parametrize("key, value, objective", [
    ("objective", {"shape": 1.0}, "shape"),
    ("feature_names", RECORD["feature_names"][::-1], "current"),
    ("taxonomy_version", "t2", "current"),
])
def test_encoders_trained_for_something_else_are_not_compared(registry, key, value, objective):
    _promote(registry, _register(registry, _encoder(), 0.5))
    calls = []
    promotion = _promote(registry, _register(registry, _encoder(objective, steps=150), 0.1, **{key: value}), calls)
    assert promotion.outcome == "refused" and not promotion.promoted and calls == []
    assert f"{key}: version 2 has {value!r}, champion 1 has {RECORD[key]!r}" in promotion.reason
    assert _holder(registry) == "1"
    assert tracking.encoder_files(registry[0], "2")[1][key] == value        # registered all the same
