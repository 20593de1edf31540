"""Benchmark figures: merged into ``bench/results.json`` and printed as a table.

A figure is ``name -> (value, unit)``; in the file it is ``{"name": {"value": v, "unit": u}}``.
Each benchmark's figures come from one run, stamped ``<benchmark>.commit`` and ``<benchmark>.date``.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


def _clean(value: float) -> float | int:
    value = float(value)
    return int(value) if value.is_integer() else round(value, 4)


def record(figures: dict[str, tuple[float, str]], path: Path = RESULTS,
           stamp: tuple[str, str, str] | None = None) -> None:
    """Merge ``figures`` into ``path``, keeping every other figure already there; ``stamp``
    (benchmark, commit, date) records which code produced them and when."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update({name: {"value": _clean(v), "unit": unit} for name, (v, unit) in figures.items()})
    if stamp:
        name, commit, date = stamp
        data.update({f"{name}.commit": {"value": commit, "unit": "git"},
                     f"{name}.date": {"value": date, "unit": "date"}})
    path.write_text(json.dumps(dict(sorted(data.items())), indent=2) + "\n")


def _format(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"


def print_table(figures: dict[str, tuple[float, str]]) -> None:
    """An aligned table: name, value (right-aligned), unit."""
    rows = [("figure", "value", "unit")] + [(n, _format(v), u) for n, (v, u) in figures.items()]
    wide = [max(len(row[i]) for row in rows) for i in range(3)]
    for k, (name, value, unit) in enumerate(rows):
        print(f"{name:<{wide[0]}}  {value:>{wide[1]}}  {unit}")
        if k == 0:
            print("-" * (sum(wide) + 4))
