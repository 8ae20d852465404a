"""Cost of one method run: wall time, peak memory, forward/backward passes.

Every column means one thing on every device:

* ``wall_seconds``: wall time of ``discover``; on CUDA the device is synchronised before the clock
  stops, so queued kernels are counted.
* ``peak_memory_mb``: peak memory the run allocated **above the level at its start**. On CUDA:
  ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` at the start, minus the
  allocation at the start (weights excluded). On CPU: the C allocator's bytes in use above the
  start (:mod:`bench.run.heap`: glibc's own statistics, which see every torch CPU tensor whichever
  executor runs the cell), sampled by a thread every 5 ms or more (a peak shorter than that can be
  missed, so it is a lower bound) and read again at the end. Where the C library has no such
  statistics it falls back to resident set size above the start, which only sees pages newly
  taken from the OS and so undercounts in a long-lived process. The row's ``text`` says which
  measurement it is: ``cuda_allocated``, ``cpu_heap_allocated``, or the fallbacks
  ``rss_fresh_process`` (a worker started for this cell) / ``rss_shared_process`` (inline).
* pass counts: ``forward_prompts`` / ``backward_prompts`` count prompts through the model;
  ``forward_model_fraction`` / ``backward_model_fraction`` weight each prompt-pass by the share of
  the model's blocks it ran (a run from a late site counts as a partial forward). It is the share of
  blocks, not of their work: the last block counts whole where it runs at the last position only
  (``bench.model.last_block``), so the pass counts are the same with and without that shortcut.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import torch

from bench.run import heap

FRESH_WORKER_ENV = "BENCH_FRESH_WORKER"  # set by executors that start a process per cell


# The rows that measure what a run cost rather than what it found: they differ between two runs of
# the same code, so every comparison of results ("rows unchanged") leaves them out.
COST_METRICS = frozenset({"wall_seconds", "peak_memory_mb", "cell_wall_seconds", "cell_peak_memory_mb",
                          "edge_universe_seconds"})


@dataclass
class CostMeter:
    counter: object
    device: torch.device | str = "cpu"
    interval_s: float = 0.005
    wall_seconds: float = 0.0
    peak_memory_mb: float = 0.0
    memory_measure: str = ""
    passes: dict[str, int] = field(default_factory=dict)

    @property
    def _cuda(self) -> bool:
        return torch.device(self.device).type == "cuda"

    def __enter__(self) -> CostMeter:
        import psutil

        self._proc = psutil.Process()
        self._stop = threading.Event()
        if self._cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._heap = heap.available()
            self._base = self._read()
            self._peak = self._base
            if self._heap:  # never spend more than ~5% of a core on sampling (mallinfo2 walks free lists)
                t = time.perf_counter()
                self._read()
                self.interval_s = max(self.interval_s, 20 * (time.perf_counter() - t))
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        self._before = self.counter.snapshot()
        self._t0 = time.perf_counter()
        return self

    def _read(self) -> int:
        return heap.in_use() if self._heap else self._proc.memory_info().rss

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._read())
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc) -> None:
        if self._cuda:
            torch.cuda.synchronize(self.device)
        self.wall_seconds = time.perf_counter() - self._t0
        if self._cuda:
            self.peak_memory_mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
            self.memory_measure = "cuda_allocated"
        else:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, self._read())
            self.peak_memory_mb = (self._peak - self._base) / 2**20
            if self._heap:
                self.memory_measure = "cpu_heap_allocated"
            else:
                self.memory_measure = "rss_fresh_process" if os.environ.get(FRESH_WORKER_ENV) == "1" else "rss_shared_process"
        self.passes = self.counter.since(self._before)

    def as_metrics(self) -> dict[str, float]:
        return {"wall_seconds": self.wall_seconds, "peak_memory_mb": self.peak_memory_mb,
                **{k: float(v) for k, v in self.passes.items()}}
