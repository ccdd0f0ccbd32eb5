"""`cem worker` with the proposals named in BENCH_PROPOSALS applied first (bench.run --with-proposals)."""

from __future__ import annotations

import os
import sys

from bench.proposals import apply
from cem.cli import main

if __name__ == "__main__":
    apply(os.environ.get("BENCH_PROPOSALS", "").split(","))
    sys.exit(main(["worker"]))
