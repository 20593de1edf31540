"""spark-submit entry point running every stage in order: `spark-submit jobs/run_all.py --env local`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))  # a source checkout

from microseg.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["run", "--stage", "all", *sys.argv[1:]])
