"""The cost meter's CPU peak memory sees torch allocations in a long-lived process.

The reference is the tensors' own size: a cell that holds 512 blocks of 256 KiB (128 MiB) at its
peak must report at least that, even when the same process did the same work twice before and
the allocator reuses the pages it kept. That is the case where RSS growth reads ~0 (0.5 MiB when
this test was written) and the cost figure's memory bars came out empty for every task but the first."""

from __future__ import annotations

import time

import pytest
import torch

from bench.model.spliced import PassCounter
from bench.run import heap
from bench.run.costs import CostMeter


def _work() -> None:
    blocks = [torch.ones(64, 1024) * i for i in range(512)]  # 512 x 256 KiB, alive together
    time.sleep(0.1)  # a peak that lasts 20 sampling intervals (the meter samples; it can miss a shorter one)
    del blocks


@pytest.mark.skipif(not heap.available(), reason="the C library has no mallinfo2 (not glibc >= 2.33)")
def test_cpu_peak_sees_reused_memory():
    _work()
    _work()  # the allocator now keeps these pages: RSS would not grow again
    with CostMeter(PassCounter(), "cpu") as cost:
        _work()
    assert cost.memory_measure == "cpu_heap_allocated"
    # at least the blocks; at most the blocks plus 16 MiB of temporaries and bookkeeping
    assert 128 <= cost.peak_memory_mb <= 128 + 16


def test_fallback_is_labelled(monkeypatch):
    monkeypatch.setattr(heap, "available", lambda: False)
    with CostMeter(PassCounter(), "cpu") as cost:
        pass
    assert cost.memory_measure in ("rss_shared_process", "rss_fresh_process")
