"""Speed benchmarks: ``make bench`` (see ``python -m bench --help``); figures in results.json."""
