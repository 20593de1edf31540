"""What the run and the report say about a source that cannot support a claim: no balances
(no liquidity) and a surrogate that does not explain the hidden state (no drivers)."""

import dataclasses
import datetime as dt
import logging

import numpy as np
import pandas as pd
import pytest

from microseg.config import ConfigError, load_config
from microseg.evaluate import surrogate
from microseg.evaluate.evaluation import _not_evaluated, check_claims
from microseg.prep.labels import NO_BALANCES, balance_gap, liquidity_unavailable
from microseg.report.figures import all_figures
from microseg.report.html import render
from test_evaluate import granularity, objective_rows, paired_rows
from test_report import _evaluation


# ---- no balances: no liquidity ---------------------------------------------------------

def test_balance_gap_says_none_or_counts_the_customers_without():
    assert balance_gap(5, 0) is None and liquidity_unavailable(5, 0) is None
    assert balance_gap(5, 2) == "2 of 5 customers have no balances in the source: their liquidity index is null"
    assert liquidity_unavailable(5, 2) is None
    assert liquidity_unavailable(5, 5) == NO_BALANCES
    assert balance_gap(5, 5).startswith("no balances in the source") and "cannot be computed" in balance_gap(5, 5)
    assert balance_gap(0, 0) is None                                    # no customers: nothing to say


def _account(spark, with_balance: bool):
    """Two customers over 8 months; customer b never has a balance, a only ``with_balance``."""
    rows = [(c, dt.date(2024, m, 1), 100.0, 50.0, (1000.0 if c == "a" and with_balance else None), 3)
            for c in ("a", "b") for m in range(1, 9)]
    return spark.createDataFrame(rows, "customer_id string, month date, income double, outflow double, "
                                       "end_balance double, n_tx int")


@pytest.mark.parametrize("with_balance", [False, True])
def test_labels_stage_warns_and_flags_a_source_without_balances(ctx, caplog, with_balance):
    from microseg.stages.prep import labels_stage

    ctx.tables.overwrite("monthly_account", _account(ctx.spark, with_balance))
    cfg = ctx.cfg.with_overrides(**{"source.loans": None, "sequences.as_of": "2024-02", "labels.horizon_months": 3})
    with caplog.at_level(logging.WARNING, logger="microseg.labels"):
        got = labels_stage(dataclasses.replace(ctx, cfg=cfg))
    warned = [r.getMessage() for r in caplog.records if r.name == "microseg.labels"]
    assert got["customers"] == 2 and got["customers_without_balances"] == (1 if with_balance else 2)
    if with_balance:
        assert got["liquidity_unavailable"] is None and got["liquidity_labelled"] == 1
        assert warned == ["labels: 1 of 2 customers have no balances in the source: their liquidity index is null"]
    else:
        assert got["liquidity_unavailable"] == "no balances in the source" and got["liquidity_labelled"] == 0
        assert len(warned) == 1 and "no balances in the source" in warned[0]


def test_summary_prints_that_liquidity_was_not_computed(ctx, capsys):
    from pyspark.sql import functions as F

    from microseg.stages.score import summary_stage

    ctx.tables.overwrite("monthly_account", _account(ctx.spark, with_balance=False))
    profiles = ctx.spark.createDataFrame(
        [(s, s // 2, 10, dt.date(2024, 8, 1), {"groceries": 1.0}) for s in range(4)],
        "segment int, coarse_segment int, customers long, as_of date, spend_mix map<string,double>")
    ctx.tables.overwrite("segment_profiles", profiles.withColumn("liquidity_index", F.lit(None).cast("double")))
    got = summary_stage(ctx)
    assert got["liquidity_unavailable"] == "no balances in the source" and got["customers_without_balances"] == 2
    assert "WARNING: liquidity: no balances in the source" in capsys.readouterr().out


def test_claims_and_report_say_liquidity_was_not_evaluated_and_why():
    missing = _not_evaluated(NO_BALANCES)
    assert missing == {"liquidity": NO_BALANCES} and _not_evaluated(None) == {}
    claims = check_claims(granularity(0.5, 0.3, 0.2), objective_rows(0.2, 0.4, 0.45), paired_rows(-0.01, 0.01),
                          "1 shape", missing)
    liquidity = claims[claims["claim"].str.contains("liquidity")]
    assert liquidity["held"].isna().all()
    assert liquidity["evidence"].tolist() == ["not evaluated: no balances in the source"]
    assert claims[claims["claim"].str.contains("bespoke GBM on default")]["held"].tolist() == [True]
    ev = _evaluation()
    ev = dataclasses.replace(ev, meta={**ev.meta, "not_evaluated": missing, "downstream_skipped": [
        {"task": "liquidity", "n_labelled": 0, "reason": "0 class(es) among 0 labelled customers"}]})
    page = render(ev, {})
    section = page.split("<h2>Downstream tasks</h2>")[1].split("</section>")[0]
    assert "liquidity not evaluated: no balances in the source." in section
    assert "liquidity not scored" not in section                        # the cause, not the symptom
    assert "not evaluated" not in render(_evaluation(), {})


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
