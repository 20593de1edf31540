"""The run report: figures, segment descriptions, the HTML page and the files it writes.

Evaluations are built by hand (pure pandas, no Spark) with known answers.
"""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from microseg.evaluate.result import Evaluation
from microseg.report.figures import all_figures
from microseg.report.html import render, segment_descriptions, write_report
from microseg.taxonomy import TRAITS

HEADINGS = ["What the segments are", "Claims checked", "Granularity across variants", "Segment map",
            "Encoder objectives against the simple references", "Trait profiles", "Spend mix", "Segment sizes",
            "Downstream tasks", "What drives each segment"]
VARIANTS = ["lstm", "feedforward", "traits"]


def _profiles() -> pd.DataFrame:
    """Three segments: 1 is high on openness, 2 low on neuroticism, 0 near the average."""
    rows = [
        # segment, coarse, customers, o, c, e, a, n, default_rate, liquidity_index
        (0, 0, 500, 0.00, 0.10, 0.00, 0.05, 0.02, 0.04, 2.0),
        (1, 1, 300, 0.60, 0.12, 0.05, 0.05, 0.00, 0.10, 1.1),
        (2, 1, 200, 0.05, 0.10, 0.02, 0.04, -0.40, np.nan, np.nan),
    ]
    return pd.DataFrame(rows, columns=["segment", "coarse_segment", "customers", *TRAITS,
                                       "default_rate", "liquidity_index"])


def _spend_mix() -> pd.DataFrame:
    """Segment 1 spends on travel, segment 2 on savings, segment 0 mostly on groceries."""
    shares = {0: {"groceries": 0.7, "travel": 0.1, "savings": 0.2},
              1: {"groceries": 0.3, "travel": 0.6, "savings": 0.1},
              2: {"groceries": 0.3, "travel": 0.1, "savings": 0.6}}
    return pd.DataFrame([(s, c, v) for s, mix in shares.items() for c, v in mix.items()],
                        columns=["segment", "txn_class", "share"])


def _evaluation() -> Evaluation:
    rng = np.random.default_rng(0)
    granularity = pd.DataFrame({
        "variant": VARIANTS, "k": [3, 4, 2], "silhouette": [0.41, 0.32, 0.25],
        "davies_bouldin": [0.9, 1.1, 1.4], "trait_var_within": [0.2, 0.4, 0.6],
        "size_min": [200, 150, 400], "size_median": [300.0, 250.0, 500.0], "size_max": [500, 400, 600],
        "ari_coarse": [0.8, 0.6, np.nan], "ari_micro": [0.7, 0.3, np.nan]})
    k_curves = pd.DataFrame([(v, k, 0.2 + 0.05 * k * (i + 1) / (k * k)) for i, v in enumerate(VARIANTS)
                             for k in range(2, 7)], columns=["variant", "k", "silhouette"])
    downstream = pd.DataFrame([
        ("synthetic", "default", "lstm features", "roc_auc", 0.81, 0.04, 15, 400, 60),
        ("synthetic", "default", "bespoke gbm", "roc_auc", 0.79, 0.05, 15, 400, 60),
        ("synthetic", "liquidity", "lstm features", "macro_f1", 0.55, np.nan, 15, 400, np.nan),
    ], columns=["dataset", "task", "model", "metric", "mean", "sd", "splits", "n_labelled", "n_positive"])
    paired = pd.DataFrame([("lstm features", "bespoke gbm", "default", "roc_auc", 0.02, 0.03, -0.01, 0.05, 15,
                            0.25, 0.02, True)],
                          columns=["model", "reference", "task", "metric", "mean_diff", "sd_diff", "diff_low",
                                   "diff_high", "splits", "test_train_ratio", "margin", "held"])
    objectives = pd.DataFrame([("shape", "learned", s, "ari_micro", v) for s, v in ((1, 0.3), (2, 0.5))]
                              + [("hand-made temporal", "reference", 1, "ari_micro", 0.6)],
                              columns=["variant", "kind", "seed", "measure", "value"])
    drivers = pd.DataFrame([(s, r, f"spend_{c}_{r}", (-1) ** r * (1.0 - 0.2 * r))
                            for s in range(3) for r, c in enumerate(["travel", "pubs", "savings"])],
                           columns=["segment", "rank", "feature", "score"])
    drivers.loc[0, "feature"] = "<script>alert(1)</script>"
    points = pd.DataFrame({"x": rng.normal(size=90), "y": rng.normal(size=90),
                           "segment": np.tile([0, 1, 2], 30), "coarse_segment": np.tile([0, 1, 1], 30),
                           "variant": np.repeat(VARIANTS, 30)})
    claims = pd.DataFrame({
        "claim": ["LSTM features give finer segments than feed-forward ones",
                  "LSTM features match bespoke models on loan default", "LSTM segments recover planted ones"],
        "held": [True, False, None],
        "evidence": ["k 3 vs 4 & silhouette 0.41 vs 0.32", "AUC 0.81 vs 0.79", "no ground truth"]})
    return Evaluation(
        granularity=granularity, k_curves=k_curves, objectives=objectives, downstream=downstream, paired=paired,
        surrogate={"r2": 0.83, "r2_per_dim": [0.7, 0.9], "inputs": 12, "rows": 3000},
        drivers=drivers, map_points=points, profiles=_profiles(), spend_mix=_spend_mix(), claims=claims,
        meta={"as_of": "2024-12", "dataset": "synthetic", "model_versions": {"lstm": 3, "feedforward": 2},
              "code_version": "abc123", "table_versions": {"gold.segments": 7}, "customers": 1000})


@pytest.fixture(scope="module")
def ev() -> Evaluation:
    return _evaluation()


@pytest.fixture(scope="module")
def page(ev) -> str:
    return render(ev, all_figures(ev))


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_descriptions_name_what_sets_each_segment_apart():
    described = segment_descriptions(_profiles(), _spend_mix())
    assert set(described) == {0, 1, 2}
    assert described[1].startswith("300 customers (30.0%), coarse group 1: high openness (+")
    assert "spends more than average on travel (60.0% vs" in described[1]
    assert "default rate 10.0%, liquidity 1.1 months" in described[1]
    assert "low neuroticism" in described[2] and "savings" in described[2]
    assert "default rate" not in described[2]
    assert "groceries" in described[0]


def test_descriptions_of_a_single_segment_say_it_is_average():
    one = _profiles().iloc[[0]]
    assert segment_descriptions(one, _spend_mix().query("segment == 0")) == {
        0: "500 customers (100.0%), coarse group 0: traits close to the average; default rate 4.0%, "
           "liquidity 2.0 months."}


def test_page_has_every_section_a_description_per_segment_and_the_run_facts(ev, page):
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in page
    for description in segment_descriptions(ev.profiles, ev.spend_mix).values():
        assert description in page
    assert "✓ held" in page and "✗ did not hold" in page and "n/a" in page
    assert "0.81 ± 0.04" in page and "0.55 ± –" in page
    assert "+0.020 [-0.010, +0.050]" in page and "0.4 [0.3, 0.5]" in page and "0.6" in page
    assert "gold.segments: 7" in page and "abc123" in page
    assert "R² = 0.83" in page


def test_every_figure_is_embedded_and_nothing_is_fetched(ev, page):
    assert page.count("data:image/png;base64,") == len(all_figures(ev)) == 7
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_text_is_escaped(page):
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "k 3 vs 4 &amp; silhouette" in page


def test_missing_results_give_a_note_not_an_error(ev):
    sparse = dataclasses.replace(
        ev, downstream=pd.DataFrame(), paired=pd.DataFrame(), objectives=pd.DataFrame(), drivers=pd.DataFrame(columns=["segment", "rank", "feature", "score"]),
        map_points=ev.map_points.query("variant == 'lstm'"), k_curves=pd.DataFrame(),
        granularity=ev.granularity.assign(ari_coarse=np.nan, ari_micro=np.nan))
    figures = all_figures(sparse)
    assert "no downstream results (no labels in this run)" in _texts(figures["downstream"])
    assert "no data" in _texts(figures["k_curves"]) and "no data" in _texts(figures["surrogate_drivers"])
    assert "no data" not in _texts(figures["segment_map"])
    page = render(sparse, figures)
    assert "No downstream results: this run has no labels." in page
    assert page.count("data:image/png;base64,") == len(figures)


def test_an_evaluation_with_nothing_in_it_still_renders():
    empty = pd.DataFrame()
    nothing = Evaluation(granularity=empty, k_curves=empty, objectives=empty, downstream=empty, paired=empty,
                         surrogate={}, drivers=empty,
                         map_points=empty, profiles=empty, spend_mix=empty, claims=empty)
    figures = all_figures(nothing)
    assert all(_texts(fig) for fig in figures.values())
    page = render(nothing, figures)
    assert all(f"<h2>{heading}</h2>" in page for heading in HEADINGS)
    assert segment_descriptions(empty, empty) == {}


def test_write_report_writes_the_page_figures_and_metrics(ev, tmp_path):
    paths = write_report(ev, tmp_path / "report")
    assert set(paths) == {"report.html", "metrics.json", *(f"figures/{n}.png" for n in all_figures(ev))}
    for path in paths.values():
        assert path.is_file() and path.stat().st_size > 0
    assert paths["figures/segment_map.png"].read_bytes().startswith(b"\x89PNG")
    assert json.loads(paths["metrics.json"].read_text()) == json.loads(ev.to_json())
    assert paths["report.html"].read_text(encoding="utf-8").count("data:image/png;base64,") == 7
