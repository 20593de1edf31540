"""What the run and the report say about a source that cannot support a claim: no balances
(no liquidity), no known segments (no structure claims, unless evaluate.known_segments
gives them) and a surrogate that does not explain the hidden state (no drivers)."""

import dataclasses
import datetime as dt
import hmac
import logging

import numpy as np
import pandas as pd
import pytest

from microseg.config import ConfigError, load_config
from microseg.evaluate import encoders, surrogate, truth
from microseg.evaluate.evaluation import _granularity, _not_evaluated, check_claims
from microseg.prep.labels import NO_BALANCES, balance_gap, liquidity_unavailable
from microseg.report.figures import all_figures
from microseg.report.html import render
from tests.test_evaluate import granularity, objective_rows, paired_rows
from tests.test_report import _evaluation

KEY = "a-pseudonym-key-of-32-characters"


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


# ---- claims and report: what was not evaluated -------------------------------------------

def test_claims_say_what_was_not_evaluated_and_why():
    missing = _not_evaluated("none", 0, 300, NO_BALANCES)
    assert missing == {"structure": truth.NONE, "liquidity": NO_BALANCES}
    claims = check_claims(granularity(0.5, 0.3, 0.2), objective_rows(0.2, 0.4, 0.45, 0.5), paired_rows(-0.01, 0.01),
                          "1 shape", missing)
    degenerate = claims.index[claims["claim"].str.contains("degenerate")].tolist()
    assert degenerate == [7]                                            # after the 7 ARI claims
    assert claims["held"].iloc[:7].isna().all()
    assert (claims["evidence"].iloc[:7] == f"not evaluated: {truth.NONE}").all()
    assert claims["held"].iloc[7] is True                               # degeneracy needs no known segments
    liquidity = claims[claims["claim"].str.contains("liquidity")]
    assert liquidity["evidence"].tolist() == ["not evaluated: no balances in the source"]
    assert claims[claims["claim"].str.contains("bespoke GBM on default")]["held"].tolist() == [True]
    assert _not_evaluated("evaluate.known_segments: /x.csv", 0, 300, None) == {
        "structure": "none of the 300 evaluated customers has a known segment in evaluate.known_segments: /x.csv"}
    assert _not_evaluated("generator: raw.ground_truth", 300, 300, None) == {}


def test_report_says_liquidity_and_structure_were_not_evaluated():
    ev = _evaluation()
    ev = dataclasses.replace(ev, meta={**ev.meta, "ground_truth": "none",
                                       "not_evaluated": {"structure": truth.NONE, "liquidity": NO_BALANCES},
                                       "downstream_skipped": [{"task": "liquidity", "n_labelled": 0,
                                                               "reason": "0 class(es) among 0 labelled customers"}]})
    page = render(ev, {})
    assert "liquidity not evaluated: no balances in the source." in page
    section = page.split("<h2>Downstream tasks</h2>")[1].split("</section>")[0]
    assert "liquidity not scored" not in section                        # the cause, not the symptom
    assert page.count("Structure claims (ARI against known segments) not evaluated: no known segments") == 2
    assert "evaluate.known_segments" in page
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


# ---- known segments of one's own ---------------------------------------------------------

def test_known_segments_config_is_checked():
    base = {"evaluate.known_segments": {"path": "known.csv", "segment": "seg"}}
    assert load_config("local", overrides=base).evaluate.known_segments.format == "csv"
    with pytest.raises(ConfigError, match="exactly one of path"):
        load_config("local", overrides={"evaluate.known_segments": {"path": "a.csv", "table": "s.t"}})
    with pytest.raises(ConfigError, match="evaluate.known_segments.colour"):
        load_config("local", overrides={"evaluate.known_segments": {"path": "a.csv", "colour": "x"}})
    assert load_config("local").evaluate.min_surrogate_r2 == 0.3
    with pytest.raises(ConfigError, match="evaluate.min_surrogate_r2"):
        load_config("local", overrides={"evaluate.min_surrogate_r2": 2})


def test_planted_scores_use_the_customers_with_a_known_segment():
    rng = np.random.default_rng(0)
    centres = [[10, 0, 0], [0, 10, 0], [0, 10, 1]]                      # b and c: one coarse group
    x = np.vstack([np.array(c) + rng.normal(0, 0.05, (30, 3)) for c in centres])
    micro = np.repeat(["a", "b", "c"], 30).astype(object)
    micro[::4] = None                                                   # a quarter unknown
    got = encoders.planted_scores(x, pd.DataFrame({"micro_segment": micro, "coarse_group": None}), seed=0)
    assert got["ari_micro"] == 1.0 and np.isnan(got["ari_coarse"]) and np.isnan(got["ari_two_level"])
    coarse = np.where(pd.isna(micro), None, np.where(micro == "a", "g1", "g2"))
    got = encoders.planted_scores(x, pd.DataFrame({"micro_segment": micro, "coarse_group": coarse}), seed=0)
    assert got["ari_coarse"] == 1.0
    assert np.isnan(encoders.planted_scores(x[:2], pd.DataFrame({"micro_segment": ["a", "b"]}), 0)["ari_micro"])


def test_granularity_scores_ari_over_the_customers_with_a_known_segment():
    """Known segments for two thirds of the customers (strings, no coarse column): ARI over
    those, no coarse ARI."""
    rng = np.random.default_rng(1)
    centres = [[10, 0, 0], [0, 10, 0], [0, 10, 1]]
    x = np.vstack([np.array(c) + rng.normal(0, 0.05, (30, 3)) for c in centres])
    seg = np.repeat([0, 1, 2], 30)
    micro = np.array(["x", "y", "z"], dtype=object)[seg]
    micro[::3] = None
    pdf = pd.DataFrame({"vec_lstm": list(x), "seg_lstm": seg, "coarse_lstm": np.minimum(seg, 1),
                        "micro_segment": micro, "coarse_group": None})
    sizes = {"lstm": pd.DataFrame({"segment": [0, 1, 2], "coarse_segment": [0, 1, 1], "customers": [30] * 3})}
    row = _granularity(pdf, ["lstm"], sizes, rng.normal(size=(90, 5)), load_config("local").segment, 0).iloc[0]
    assert row["ari_micro"] == 1.0 and row["ari_micro_at_planted_k"] == 1.0
    assert np.isnan(row["ari_coarse"]) and np.isnan(row["ari_coarse_at_planted_k"])


def test_known_segments_are_read_on_bronze_pseudonyms(ctx, tmp_path, monkeypatch):
    """A CSV of known segments with ingest.pseudonymise on: ids become the same HMAC as
    bronze's; missing columns and repeated ids fail naming the key."""
    assert truth.known_segments(ctx) == (None, "none")                 # no generator, nothing configured
    path = tmp_path / "known.csv"
    path.write_text("client;seg;group\n c1 ;s1;g1\nc2;s2;g1\nc3;;g2\n")
    monkeypatch.setenv("MICROSEG_PSEUDONYM_KEY", KEY)
    cfg = ctx.cfg.with_overrides(**{"ingest.pseudonymise": True, "evaluate.known_segments": {
        "path": str(path), "options": {"sep": ";"}, "customer_id": "client", "segment": "seg", "coarse": "group"}})
    known, source = truth.known_segments(dataclasses.replace(ctx, cfg=cfg))
    assert source == f"evaluate.known_segments: {path}"
    got = sorted(tuple(r) for r in known.collect())
    bronze = {c: hmac.digest(KEY.encode(), c.encode(), "sha256").hex() for c in ("c1", "c2")}
    assert got == sorted([(bronze["c1"], "s1", "g1"), (bronze["c2"], "s2", "g1")])    # c3: no segment
    plain = cfg.evaluate.known_segments.model_copy(update={"coarse": None})
    assert {tuple(r) for r in truth.read_known(ctx.spark, plain, str(path), None).collect()} == {
        ("c1", "s1", None), ("c2", "s2", None)}
    wrong = plain.model_copy(update={"segment": "segment"})
    with pytest.raises(ConfigError, match=r"evaluate.known_segments.segment: no column 'segment'") as err:
        truth.read_known(ctx.spark, wrong, str(path), None)
    assert "['client', 'seg', 'group']" in str(err.value)
    path.write_text("c9;s9\nc1;s1\n")                                   # no header: its first row is not shown
    with pytest.raises(ConfigError, match="customer_id: no column 'client'") as err:
        truth.read_known(ctx.spark, plain, str(path), None)
    assert "c9" not in str(err.value)
    path.write_text("client;seg\nc1;s1\nc1;s2\n")
    with pytest.raises(ConfigError, match="1 repeated customer id"):
        truth.read_known(ctx.spark, plain, str(path), None)
