"""CoLES embeddings (the evaluation's self-supervised peer) on a constructed case.

pytorch-lifestream is an optional extra that the core environment (and so CI) lacks; the
module then skips with the reason shown in the summary. To run it:
    PYTHONPATH=lib:$(scripts/coles-env.sh) $B -m pytest tests/test_coles.py"""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from microseg.evaluate import coles

pytestmark = pytest.mark.skipif(
    not coles.available(),
    reason="optional extra pytorch-lifestream (CoLES) not installed; the core env/CI lacks it by design: "
           "run scripts/coles-env.sh and add its folder to PYTHONPATH after lib")

N, T, F, HIDDEN = 240, 24, 84, 16


def two_groups(seed=0):
    """Each customer has a persistent profile (its level per feature) plus monthly noise;
    group 1's profile is high in features 0-7 and low in 8-15, group 0's the reverse, a
    weak signal (half the monthly noise) that an untrained encoder separates only partly.
    Histories start at random months, zero-padded on the left as in the real sequences."""
    rng = np.random.default_rng(seed)
    group = np.arange(N) % 2
    pattern = np.zeros(F)
    pattern[:8], pattern[8:16] = 0.5, -0.5
    profile = np.where(group == 1, 1, -1)[:, None, None] * pattern + rng.normal(0, 0.5, (N, 1, F))
    x = (profile + rng.normal(0, 1, (N, T, F))).astype(np.float32)
    active = (np.arange(T)[None, :] >= rng.integers(0, 12, N)[:, None]).astype(np.float32)
    x *= active[:, :, None]
    train = rng.random(N) < 0.6
    return x, active, train, group


def test_coles_embeddings_are_deterministic_and_separate_the_groups():
    x, active, train, group = two_groups()
    emb = coles.coles_embeddings(x, active, train, seed=7, epochs=3, hidden=HIDDEN)
    assert emb.shape == (N, HIDDEN)
    assert np.isfinite(emb).all()
    assert np.array_equal(emb, coles.coles_embeddings(x, active, train, seed=7, epochs=3, hidden=HIDDEN))

    clf = LogisticRegression(max_iter=1000).fit(emb[train], group[train])
    assert clf.score(emb[~train], group[~train]) > 0.8          # held-out customers
