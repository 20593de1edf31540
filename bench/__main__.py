"""``make bench [ARGS="--only prep --scale small"]``: run benchmarks, record and print figures.

Each benchmark is a module ``bench.<name>`` with ``run(scale) -> {name: (value, unit)}``.
Full-scale figures are merged into ``bench/results.json`` (each benchmark's from one run,
stamped) and README.md's generated table; ``--scale small`` is a quick
smoke run whose figures are printed only, so they never replace the real ones.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import time

from bench import readme
from bench.results import RESULTS, print_table, record
from microseg.tracking import code_version

BENCHMARKS = ("prep", "train", "score", "small")   # the default set
EXTRA = ("scale",)                          # only when asked for with --only


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=BENCHMARKS + EXTRA, metavar="NAME",
                        help=f"run only this benchmark (repeatable); one of {', '.join(BENCHMARKS + EXTRA)}")
    parser.add_argument("--scale", choices=("small", "full"), default="full",
                        help="small: ~100k and ~1M transactions, not recorded; "
                             "full (default): ~1M and ~10M transactions")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    version = code_version()   # before the first benchmark records: its own writes are no change
    figures: dict[str, tuple[float, str]] = {}
    for name in args.only or BENCHMARKS:
        print(f"== bench {name}, scale {args.scale}", flush=True)
        got = importlib.import_module(f"bench.{name}").run(args.scale)
        if args.scale == "full":
            record(got, stamp=(name, version, datetime.date.today().isoformat()))
            # per benchmark: a later failure keeps the earlier figures
        figures.update(got)
    if args.scale == "full":
        readme.update()   # README's generated table follows results.json
    print()
    print_table(figures)
    where = f"recorded in {RESULTS}" if args.scale == "full" else "small scale: not recorded"
    print(f"\nbench took {time.perf_counter() - start:.0f} s; {where}")


if __name__ == "__main__":
    main()
