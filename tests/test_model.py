import numpy as np
import pytest
import torch
from sklearn.metrics import r2_score

from microseg.model import data
from microseg.model.networks import LSTMEncoder
from microseg.model.train import R2Accumulator, masked_mse, train


def test_encoder_accepts_any_length_and_scales_inside():
    m = LSTMEncoder(n_features=3, hidden=4)
    assert m(torch.zeros(2, 5, 3)).shape == (2, 5, 5)
    assert m.embed(torch.zeros(2, 9, 3)).shape == (2, 4)
    x = torch.randn(2, 4, 3)
    m.set_scaling([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    shifted = LSTMEncoder(n_features=3, hidden=4)
    shifted.load_state_dict({**m.state_dict(), "mean": torch.zeros(3), "std": torch.ones(3)})
    torch.testing.assert_close(m.embed(x), shifted.embed((x - torch.tensor([1.0, 2, 3])) / 2))


def test_masked_mse_ignores_masked_cells():
    pred = torch.zeros(1, 3, 5)
    y = torch.ones(1, 3, 5)
    y[0, 2] = 100.0                      # masked: must not count
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert masked_mse(pred, y, mask).item() == pytest.approx(1.0)


def test_r2_accumulator_matches_sklearn_over_batches():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(40, 6, 5))
    p = y + rng.normal(scale=0.5, size=y.shape)
    mask = (rng.random((40, 6)) > 0.3).astype(float)
    acc = R2Accumulator()
    for s in (slice(0, 15), slice(15, 40)):
        acc.add(torch.tensor(p[s]), torch.tensor(y[s]), torch.tensor(mask[s]))
    m = mask.astype(bool)
    expected = r2_score(y[m], p[m], multioutput="raw_values")
    np.testing.assert_allclose(acc.r2(), expected, rtol=1e-10)


@pytest.fixture
def toy_converter(spark, tmp_path):
    """A learnable task: the target is a fixed linear map of the features."""
    rng = np.random.default_rng(1)
    t, f, n = 4, 3, 256
    x = rng.normal(size=(n, t, f)).astype("float32")
    w = rng.normal(size=(f, 5)).astype("float32")
    y = (x @ w).astype("float32")
    rows = [(f"C{i}", x[i].ravel().tolist(), y[i].ravel().tolist(), [1.0] * t) for i in range(n)]
    df = spark.createDataFrame(rows, "customer_id string, features array<float>, targets array<float>, "
                                     "target_mask array<float>")
    conv = data.make_converter(df, tmp_path / "petastorm", 2)
    yield conv, t, f, n
    conv.delete()


def test_training_through_petastorm_lowers_loss_and_is_reproducible(toy_converter):
    conv, t, f, n = toy_converter
    spec = {"n_features": f, "hidden": 16, "layers": 1, "dropout": 0.0, "n_targets": 5}
    kwargs = dict(epochs=4, batch_size=32, learning_rate=0.02, steps=data.steps_per_epoch(n, 32), seed=3)
    first = train(conv, conv, spec, (np.zeros(f), np.ones(f)), t, **kwargs)
    losses = [h["train_loss"] for h in first.history]
    assert losses[-1] < 0.5 * losses[0]
    assert first.final["val_loss"] < first.history[0]["val_loss"]
    again = train(conv, conv, spec, (np.zeros(f), np.ones(f)), t, **kwargs)
    assert again.state_dict == first.state_dict          # same data and seed: same model
