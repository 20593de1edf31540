"""What the run and the report say about a source that cannot support a claim: a surrogate
that does not explain the hidden state (no drivers)."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from microseg.config import ConfigError, load_config
from microseg.evaluate import surrogate
from microseg.report.figures import all_figures
from microseg.report.html import render
from test_report import _evaluation


# ---- the surrogate that explains nothing -----------------------------------------------

def test_a_surrogate_with_low_fidelity_names_no_drivers_and_says_why():
    rng = np.random.default_rng(0)
    inputs, segments = rng.normal(size=(300, 5)), np.repeat([0, 1, 2], 100)
    train, names = np.arange(300) < 200, [f"f{i}" for i in range(5)]
    noise = rng.normal(size=(300, 4))                                   # unrelated to the inputs
    fidelity, drivers = surrogate.explain(inputs, noise, train, segments, names, min_r2=0.3)
    assert fidelity["r2"] < 0.3 and drivers.empty and list(drivers.columns) == surrogate.DRIVERS
    assert "does not explain the hidden state" in fidelity["unexplained"] and "min_surrogate_r2 (0.3)" in \
        fidelity["unexplained"]
    linear = inputs @ rng.normal(size=(5, 4))
    fidelity, drivers = surrogate.explain(inputs, linear, train, segments, names, min_r2=0.3)
    assert fidelity["r2"] > 0.9 and "unexplained" not in fidelity and len(drivers) == 3 * 5


def test_the_report_shows_the_sentence_instead_of_drivers():
    ev = _evaluation()
    reason = ("The linear surrogate does not explain the hidden state: its fidelity R² -11.40 is below "
              "evaluate.min_surrogate_r2 (0.3), so no inputs are named as drivers of the segments")
    weak = dataclasses.replace(ev, surrogate={"r2": -11.4, "min_r2": 0.3, "unexplained": reason},
                               drivers=pd.DataFrame(columns=surrogate.DRIVERS))
    page = render(weak, all_figures(weak))
    assert f"<strong>{reason}.</strong>" in page and "top inputs (score)" not in page
    assert "top inputs (score)" in render(ev, {})


def test_min_surrogate_r2_is_checked():
    assert load_config("local").evaluate.min_surrogate_r2 == 0.3
    with pytest.raises(ConfigError, match="evaluate.min_surrogate_r2"):
        load_config("local", overrides={"evaluate.min_surrogate_r2": 2})
