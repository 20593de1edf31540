"""``python -m bench.readme``: rewrite README.md's generated table of bench/results.json."""

from __future__ import annotations

import json
from pathlib import Path

from bench.results import RESULTS, with_table

README = Path(__file__).resolve().parent.parent / "README.md"


def update(readme: Path = README, results: Path = RESULTS) -> None:
    readme.write_text(with_table(readme.read_text(), json.loads(results.read_text())))


if __name__ == "__main__":
    update()
