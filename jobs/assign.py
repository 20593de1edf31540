"""spark-submit entry point for the assign stage: `spark-submit jobs/assign.py --env local`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))  # a source checkout

from microseg.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["run", "--stage", "assign", *sys.argv[1:]])
