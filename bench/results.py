"""Benchmark figures: merged into ``bench/results.json`` and printed as a table.

A figure is ``name -> (value, unit)``; in the file it is ``{"name": {"value": v, "unit": u}}``.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


def _clean(value: float) -> float | int:
    value = float(value)
    return int(value) if value.is_integer() else round(value, 4)


def record(figures: dict[str, tuple[float, str]], path: Path = RESULTS) -> None:
    """Merge ``figures`` into ``path``, keeping every other figure already there."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update({name: {"value": _clean(v), "unit": unit} for name, (v, unit) in figures.items()})
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
