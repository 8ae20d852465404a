"""Cost of one method run: wall time, peak memory, forward/backward passes.

Peak memory is the peak resident set size above the level at the start of the run, sampled by a
background thread (torch's CPU allocations are invisible to ``tracemalloc``); on CUDA it is
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import torch


@dataclass
class CostMeter:
    counter: object
    interval_s: float = 0.005
    wall_seconds: float = 0.0
    peak_memory_mb: float = 0.0
    passes: dict[str, int] = field(default_factory=dict)

    def __enter__(self) -> CostMeter:
        import psutil

        self._proc = psutil.Process()
        self._base = self._proc.memory_info().rss
        self._peak = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._before = self.counter.snapshot()
        self._t0 = time.perf_counter()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._proc.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc) -> None:
        self.wall_seconds = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._proc.memory_info().rss)
        if torch.cuda.is_available():
            self.peak_memory_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            self.peak_memory_mb = (self._peak - self._base) / 2**20
        self.passes = self.counter.since(self._before)

    def as_metrics(self) -> dict[str, float]:
        return {"wall_seconds": self.wall_seconds, "peak_memory_mb": self.peak_memory_mb,
                **{k: float(v) for k, v in self.passes.items()}}
