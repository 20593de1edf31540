import numpy as np
import pytest
import torch
from sklearn.metrics import r2_score

from microseg.model.networks import LSTMEncoder
from microseg.model.networks import FeedForwardEncoder
from microseg.model.train import R2Accumulator, aligned, masked_mse


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




def test_feedforward_aggregates_the_window_and_targets_its_mean():
    m = FeedForwardEncoder(n_features=3, hidden=4, layers=2)
    x = torch.randn(2, 6, 3)
    assert m(x).shape == (2, 5) and m.embed(x).shape == (2, 4)
    # the order of months does not matter to a window aggregate
    torch.testing.assert_close(m.embed(x), m.embed(x.flip(1)))
    y = torch.zeros(2, 6, 5)
    y[0, :2] = 1.0
    y[0, 2:] = 7.0                      # masked out below
    mask = torch.zeros(2, 6)
    mask[0, :2] = 1.0
    pred, target, cell_mask = aligned(m, m(x), y, mask)
    assert pred.shape == target.shape == (2, 1, 5)
    assert target[0, 0].tolist() == [1.0] * 5 and cell_mask.tolist() == [[1.0], [0.0]]


def test_lstm_embedding_can_carry_the_cell_state():
    torch.manual_seed(0)
    plain = LSTMEncoder(n_features=3, hidden=4)
    with_cell = LSTMEncoder(n_features=3, hidden=4, embed_cell=True)
    with_cell.load_state_dict(plain.state_dict())
    x = torch.randn(2, 5, 3)
    both = with_cell.embed(x)
    assert both.shape == (2, 8)
    torch.testing.assert_close(both[:, :4], plain.embed(x))
