"""Job functions for tests/test_executors.py: module-level, so workers import them by name.

Nothing heavy is imported at module level: ``torch_was_preloaded`` checks that the forkserver
had imported torch before this module was loaded in the worker.
"""

from __future__ import annotations

import os
import sys
import time


def rows(arg):
    """Ordinary rows (floats, strings, lists), a pure function of ``arg``."""
    n = int(arg)
    return [{"task": "t", "metric": f"m{i}", "value": n * 0.5 + i, "per_prompt": [float(i), n / 3.0], "seed": n}
            for i in range(3)]


def raise_value_error(arg):
    raise ValueError(f"bad input {arg!r}")


def exit_hard(arg):
    os._exit(int(arg))


def segfault(arg):
    import ctypes

    ctypes.string_at(0)


def allocate(arg):
    """Hold ``mb`` megabytes (touched, so resident) for ``hold_s`` seconds."""
    mb, hold_s = arg
    # a fresh anonymous mapping, every page touched: resident growth whatever the heap already holds
    # (a bytes object can land in freed heap pages that are still resident, so RSS would not grow)
    import mmap

    n = int(mb) << 20
    block = mmap.mmap(-1, n)
    for i in range(0, n, 4096):
        block[i] = 1
    time.sleep(hold_s)
    size = len(block)
    block.close()
    return [{"metric": "bytes", "value": float(size)}]


def sleep(arg):
    time.sleep(float(arg))
    return [{"metric": "slept", "value": float(arg)}]


def timestamps(arg):
    """Start and end time of a ``arg``-second job, and the worker's pid."""
    t0 = time.time()
    time.sleep(float(arg))
    return [{"metric": "span", "start": t0, "end": time.time(), "pid": os.getpid()}]


def not_rows(arg):
    return {"not": "a list"}


def torch_was_preloaded(arg):
    return [{"metric": "torch_preloaded", "value": float("torch" in sys.modules)}]


def torch_matmul(arg):
    """Multi-threaded torch work in a forked worker (would hang if the fork broke torch's thread pool)."""
    import torch

    torch.manual_seed(0)
    a = torch.randn(int(arg), int(arg))
    return [{"metric": "trace", "value": float((a @ a).trace()), "threads": torch.get_num_threads()}]


def node_ip(arg):
    import ray

    return [{"metric": "node_ip", "text": ray.util.get_node_ip_address()}]


# A plugin executor, registered by tests through a fake entry point (tests/test_executors.py).
from bench.run.executors.inline import InlineExecutor  # noqa: E402


class SerialExecutor(InlineExecutor):
    """The inline executor under another name: what a third-party executor plugin looks like."""

    name = "serial"
