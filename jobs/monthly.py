"""spark-submit entry point running the monthly flow (new month in, assign with the champion): `spark-submit jobs/monthly.py --env local`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))  # a source checkout

from microseg.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["run", "--stage", "monthly", *sys.argv[1:]])
