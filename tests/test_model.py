import numpy as np
import pytest
import torch

from microseg.model import layout, objectives
from microseg.model.batch import left_align, valid_span
from microseg.model.networks import FeedForwardEncoder, LSTMEncoder, batch_of, build_model
from microseg.model.shape import PARTS, reliability, trajectory_shape

C = 2                       # classes: features are [log spend C][share C][log count C][3 account][2 calendar]
F = layout.n_features(C)
EMBEDDINGS = ("last", "last_cell", "pooled", "seasonal")


def spec(**kw):
    return {"kind": "lstm", "n_features": F, "hidden": 4, "months": 6, "objective": "next", **kw}


def months(active: list[list[int]], seed: int = 0) -> torch.Tensor:
    """Random non-zero features on active months, zeros elsewhere."""
    a = torch.tensor(active, dtype=torch.float32)
    return (torch.rand(*a.shape, F, generator=torch.Generator().manual_seed(seed)) + 0.1) * a.unsqueeze(-1)


def test_padding_before_and_after_the_history_changes_nothing():
    torch.manual_seed(0)
    for embedding in EMBEDDINGS:
        m = LSTMEncoder(spec(embedding=embedding))
        core = months([[1, 1, 1]])
        padded = torch.zeros(1, 8, F)
        padded[0, 2:5] = core[0]                       # two months before, three after: padding
        torch.testing.assert_close(m.embed(padded), m.embed(core))
        gap = torch.zeros(1, 5, F)
        gap[0, [0, 2, 4]] = core[0]                    # inactive months inside the history count
        assert not torch.allclose(m.embed(gap), m.embed(core))


def test_left_align_moves_the_valid_span_to_the_front():
    active = torch.tensor([[0., 1., 0., 1., 0.], [0., 0., 0., 0., 0.]])
    assert valid_span(active).tolist() == [[0, 1, 1, 1, 0], [0, 0, 0, 0, 1]]
    x = torch.arange(10.).reshape(2, 5, 1)
    b = left_align(x, torch.zeros(2, 5, 5), active, active)
    assert b.lengths.tolist() == [3, 1]
    assert b.x[0, :, 0].tolist() == [1.0, 2.0, 3.0, 0.0, 0.0]
    assert b.valid[1].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_scaling_lives_inside_the_model():
    m = LSTMEncoder(spec())
    x = months([[1, 1, 1, 1]])
    mean, std = torch.rand(F) + 0.5, torch.rand(F) + 0.5
    m.set_scaling(mean, std)
    plain = LSTMEncoder(spec())
    plain.load_state_dict({**m.state_dict(), "mean": torch.zeros(F), "std": torch.ones(F)})
    torch.testing.assert_close(m.scale(x), plain.scale((x - mean) / std))
    assert set(m.state_dict()) >= {"mean", "std"}


def test_embedding_options_and_any_length():
    x = months([[1] * 9, [0, 0, 1, 1, 1, 1, 1, 1, 1]])
    widths = {e: LSTMEncoder(spec(embedding=e)).encode(batch_of(x))[1].shape for e in EMBEDDINGS}
    assert widths == {"last": (2, 4), "last_cell": (2, 8), "pooled": (2, 8), "seasonal": (2, 24)}


def test_the_seasonal_read_out_feeds_the_shape_head_and_downstream_models_get_last_and_mean():
    torch.manual_seed(5)
    x = months([[1] * 9, [0, 0, 1, 1, 1, 1, 1, 1, 1]])
    m = LSTMEncoder(spec(objective="profile", embedding="seasonal"))
    pooled = LSTMEncoder(spec(objective="profile", embedding="pooled"))
    pooled.lstm.load_state_dict(m.lstm.state_dict())
    vector = m.encode(batch_of(x))[1]
    emb, state = m.vectors(x)
    torch.testing.assert_close(state, pooled.encode(batch_of(x))[1])         # last and mean hidden state
    torch.testing.assert_close(emb, vector @ m.shape_metric())               # segments: the whole read-out
    assert vector.shape[1] == 24 and not torch.allclose(vector[:, 8:], torch.zeros(2, 16))


def test_a_feature_width_from_before_the_calendar_columns_is_refused():
    with pytest.raises(ValueError, match="rebuild gold.sequences"):
        LSTMEncoder(spec(n_features=3 * C + 3))


def test_objectives_resolve_presets_sums_and_mappings():
    assert objectives.resolve("multi_horizon") == {f"{k}@{h}": 1.0 for k in ("traits", "shares") for h in (1, 3, 6)}
    assert objectives.resolve("next+next") == {"traits@1": 2.0}
    assert objectives.resolve({"shape": 2, "traits@12": 0.5}) == {"shape": 2.0, "traits@12": 0.5}
    for bad in ("nope", {"shares": 1.0}, {"shape": -1.0}, {}):
        with pytest.raises(ValueError, match="model.objective"):
            objectives.resolve(bad)


def test_every_part_has_a_name_mlflow_accepts():
    from mlflow.utils.validation import _validate_metric_name
    for preset in objectives.PRESETS:
        for part in objectives.resolve(preset):
            _validate_metric_name(f"val_loss_{objectives.metric_key(part)}")
    with pytest.raises(Exception, match="Names may only contain"):
        _validate_metric_name("val_loss_traits@1")


def test_forecast_targets_look_ahead_within_the_history_only():
    traits = torch.arange(4.).view(1, 4, 1).expand(1, 4, 5).clone()
    x = months([[1, 1, 1, 0]])                       # month 3 is trailing padding
    b = batch_of(x, traits, torch.ones(1, 4))
    y, mask = objectives.targets("traits@1", b, torch.zeros(1, 4, C), torch.zeros(1, 4, 3))
    assert y[0, :, 0].tolist() == [1.0, 2.0, 0.0, 0.0]     # month 2 has no next month in the history
    assert mask[0].tolist() == [1.0, 1.0, 0.0, 0.0]
    y0, mask0 = objectives.targets("traits@0", b, torch.zeros(1, 4, C), torch.zeros(1, 4, 3))
    assert mask0[0].tolist() == [1.0, 1.0, 1.0, 0.0]


def test_part_loss_is_scale_free_and_ignores_masked_cells():
    torch.manual_seed(1)
    y = torch.randn(8, 6, 3)
    pred = y + 0.5 * torch.randn_like(y)
    mask = (torch.rand(8, 6) > 0.3).float()
    base = objectives.part_loss(pred, y, mask)
    torch.testing.assert_close(objectives.part_loss(100 * pred, 100 * y, mask), base)
    spoiled = pred.clone()
    spoiled[mask == 0] = 1e6
    torch.testing.assert_close(objectives.part_loss(spoiled, y, mask), base)
    assert objectives.part_loss(y, y, mask).item() == 0.0


@pytest.mark.parametrize("objective", ["current", "next", "multi_horizon", "reconstruct", "shape", "account",
                                       "multi_horizon+reconstruct+shape"])
def test_every_objective_trains_its_loss_down(objective):
    torch.manual_seed(0)
    x = months([[1] * 6] * 32, seed=3)
    x[..., C:2 * C] = torch.softmax(x[..., C:2 * C] * 3, dim=-1)       # shares sum to 1
    traits = x[..., C:2 * C] @ torch.randn(C, 5)
    b = batch_of(x, traits, torch.ones(32, 6))
    m = LSTMEncoder(spec(objective=objective, hidden=8))
    opt = torch.optim.Adam(m.parameters(), lr=0.02)
    first = objectives.loss(m, b)[0].item()
    for _ in range(60):
        opt.zero_grad()
        objectives.loss(m, b)[0].backward()
        opt.step()
    assert objectives.loss(m, b)[0].item() < 0.7 * first


def test_feedforward_takes_customer_level_parts_only_and_ignores_month_order():
    m = FeedForwardEncoder({"n_features": F, "hidden": 4, "layers": 2, "months": 6, "objective": "window_traits"})
    x = months([[1] * 6, [0, 1, 1, 1, 1, 1]])
    torch.testing.assert_close(m.embed(x[:1]), m.embed(x[:1].flip(1)))
    assert m(batch_of(x))["window_traits"].shape == (2, 5)
    with pytest.raises(ValueError, match="per-month states"):
        build_model({"kind": "feedforward", "n_features": F, "months": 6, "objective": "next"})


def calendar(first_month: int, n: int) -> torch.Tensor:
    """[1, n] calendar angles of n months from ``first_month`` (0: January)."""
    return (torch.arange(n) + first_month).float().view(1, -1) * 2 * np.pi / 12


def test_shape_reads_trend_season_and_level_of_each_class():
    t = torch.arange(12.)
    shares = torch.stack([t / 12, torch.sin(2 * np.pi * t / 6)], dim=-1).unsqueeze(0)
    f = trajectory_shape(shares, torch.ones(1, 12), calendar(0, 12)).view(8, 2)      # parts x classes
    mean, vol, trend, sin6, cos6, sin12, cos12, level = f
    assert trend[0].item() == pytest.approx(1.0, abs=1e-5)           # +1/12 a month = +1 a year
    assert level[0].item() == pytest.approx(8 / 12, abs=1e-5)             # mean of months 8-11 minus 0-3
    assert abs(sin6[1].item()) == pytest.approx(1.0, abs=1e-5) and abs(cos6[1].item()) < 1e-5
    assert abs(sin6[0].item()) < abs(sin6[1].item())


def test_the_seasonal_phase_is_the_calendar_s_whichever_month_a_window_ends_in():
    """Two customers who buy more in the same calendar months get the same seasonal
    projections though one window ends three months later (phase read back from each
    window's end, they differed); a customer peaking three months later does not."""
    def season(first_month: int, peak_shift: int, n: int = 12) -> torch.Tensor:
        cal = calendar(first_month, n)
        shares = torch.sin(cal * 2 - peak_shift * np.pi / 3).unsqueeze(-1)     # a 6-month cycle on the calendar
        return trajectory_shape(shares, torch.ones(1, n), cal).view(8)[3:5]   # sin6, cos6
    torch.testing.assert_close(season(0, 0), season(3, 0), atol=1e-5, rtol=0)
    assert (season(0, 0) - season(0, 3)).abs().max() > 1.0

def test_embeddings_lie_as_far_apart_as_the_reliability_weighted_standardised_predicted_shapes():
    torch.manual_seed(3)
    x = torch.rand(7, 6, F) + 0.1
    for hidden, embedding in ((6, "last"), (4, "seasonal")):      # state narrower, then wider than the 16 shapes
        m = LSTMEncoder(spec(objective="profile", hidden=hidden, embedding=embedding))
        m.shape_var.copy_(torch.rand(16) + 0.01)                  # as training leaves it: each output's variance
        m.shape_halves[4].copy_(torch.rand(16))                   # ... and the target's split-half moments
        rel = reliability(m.shape_halves)
        assert 0.0 < rel.min() < rel.max() < 1.0
        with torch.no_grad():
            emb, state = m.embed(x), m.encode(batch_of(x))[1]
            shapes = m(batch_of(x))["shape"] / m.shape_var.sqrt() * rel.sqrt()
        torch.testing.assert_close(torch.cdist(emb, emb), torch.cdist(shapes, shapes), atol=1e-5, rtol=1e-4)
        assert emb.shape[1] == min(state.shape[1], 16)
        assert not torch.allclose(torch.cdist(emb, emb), torch.cdist(state, state))
    plain = LSTMEncoder(spec(objective="next", hidden=6))
    torch.testing.assert_close(plain.embed(x), plain.encode(batch_of(x))[1])      # no shape part: the state


def test_training_tracks_the_variance_of_each_shape_output_and_scoring_leaves_it():
    torch.manual_seed(4)
    m = LSTMEncoder(spec(objective="shape"))
    b = batch_of(torch.rand(64, 6, F) + 0.1)
    for _ in range(1200):                                           # momentum 0.02: the start (1.0) fades
        objectives.loss(m, b)
    with torch.no_grad():
        expected = m(b)["shape"].var(dim=0)
    torch.testing.assert_close(m.shape_var, expected, rtol=1e-3, atol=1e-9)
    m.eval()
    before = m.shape_var.clone()
    objectives.loss(m, batch_of(torch.rand(64, 6, F)))
    torch.testing.assert_close(m.shape_var, before, rtol=0, atol=0)


def test_training_tracks_how_reliable_each_shape_target_is_across_halves_of_the_months():
    """Class 0's count is each customer's own (steady over the months, different between
    customers), class 1's is drawn afresh every month alike for all: the window mean of the
    shares is the customer's, their trend and seasonal swings are the months' noise."""
    g = torch.Generator().manual_seed(5)
    n, t = 256, 12
    own = torch.randint(1, 12, (n, 1), generator=g).float().expand(n, t)
    noise = torch.randint(1, 12, (n, t), generator=g).float()
    x = torch.rand(n, t, F, generator=g) + 0.1
    x[..., 2 * C:3 * C] = torch.log1p(torch.stack([own, noise], dim=-1))
    m = LSTMEncoder(spec(objective="shape", months=t))
    assert torch.equal(reliability(m.shape_halves), torch.ones(len(PARTS) * C))   # untrained: every dimension alike
    b = batch_of(x)
    for _ in range(400):
        objectives.loss(m, b)
    rel = dict(zip([f"{p}__{c}" for p in PARTS for c in range(C)], reliability(m.shape_halves).tolist()))
    assert rel["mean__0"] > 0.9 and rel["volatility__0"] > 0.5
    assert max(rel[f"{p}__0"] for p in ("trend", "sin6", "cos6", "sin12", "cos12", "level_change")) < 0.4
    m.eval()
    before = m.shape_halves.clone()
    objectives.loss(m, b)
    assert torch.equal(m.shape_halves, before)                                  # scoring leaves it


def test_weights_saved_before_the_reliability_was_kept_load_with_reliability_one():
    m = LSTMEncoder(spec(objective="profile"))
    state = {k: v for k, v in m.state_dict().items() if k != "shape_halves"}
    fresh = LSTMEncoder(spec(objective="profile"))
    fresh.shape_halves[4].zero_()
    fresh.load_state_dict(state)
    assert torch.equal(reliability(fresh.shape_halves), torch.ones(len(PARTS) * C))
    with pytest.raises(RuntimeError, match="heads.shape.weight"):
        fresh.load_state_dict({k: v for k, v in state.items() if k != "heads.shape.weight"})
