"""Cost benchmarks (pytest-benchmark): run with `make perf`, not part of the unit tests."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
