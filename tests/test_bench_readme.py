"""README's measured figures are bench/results.json's: the generated table, and every
figure the prose cites as `name` = value."""

import json
import re
from pathlib import Path

from bench.results import RESULTS, readme_table, record

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_generated_table_is_results_json():
    data = json.loads(RESULTS.read_text())
    assert readme_table(data) in README.read_text(), "README's table is stale: run python -m bench.readme"


def test_every_cited_figure_matches_results_json():
    data = json.loads(RESULTS.read_text())
    cited = re.findall(r"`([a-z0-9_]+\.[a-z0-9_.]+)` = ([\d,]+(?:\.\d+)?)", README.read_text())
    assert cited
    for name, text in cited:
        assert name in data, f"README cites {name}, which bench/results.json lacks"
        decimals = len(text.partition(".")[2])
        assert float(text.replace(",", "")) == round(data[name]["value"], decimals), (name, text)


def test_a_benchmark_run_replaces_all_its_earlier_figures(tmp_path):
    path = tmp_path / "results.json"
    record({"a.x": (1, "s"), "a.y": (2, "s")}, path, stamp=("a", "c1", "2026-01-01"))
    record({"b.z": (3, "s")}, path, stamp=("b", "c1", "2026-01-01"))
    record({"a.x": (4, "s")}, path, stamp=("a", "c2", "2026-01-02"))   # a.y is no longer measured
    data = json.loads(path.read_text())
    assert set(data) == {"a.x", "b.z", "a.commit", "a.date", "b.commit", "b.date"}
    assert data["a.x"]["value"] == 4 and data["a.commit"]["value"] == "c2"
    assert "a.x" in readme_table(data) and "at c2, 2026-01-02" in readme_table(data)
