"""A plan's simulations in forked worker processes, one per core.

Each method's simulation is independent of the others and single-threaded Python (the meta device
does no arithmetic), so a plan on two cores takes about half as long with two workers. The workers
are forked after the planned model is built, so they share it (and the simulation memo as it was at
the fork) without pickling it; only each method's plan comes back. Fork is used where the platform
offers it (Linux); elsewhere, with one job, or when a worker dies, the work runs in this process, so
the plan is the same either way (``tests/test_plan_speed.py`` compares the two)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

log = logging.getLogger("bench")
_WORK: tuple | None = None  # (fn, items): set before the fork, read by the workers


def _worker_init() -> None:
    """One thread per worker, before anything runs: a forked child must not enter an OpenMP parallel
    region the parent's thread pool ran (GNU OpenMP hangs there); PyTorch's own DataLoader workers do
    the same. The simulations are single-threaded Python anyway."""
    import torch

    torch.set_num_threads(1)


def _call(i: int):
    fn, items = _WORK
    return fn(items[i])


def default_jobs() -> int:
    """The cores this process may use, at most 4 (a plan has about ten simulations)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, n))


def can_fork() -> bool:
    import multiprocessing as mp

    return "fork" in mp.get_all_start_methods() and os.name == "posix" and os.uname().sysname == "Linux"


def forked_map(fn: Callable, items: Sequence, jobs: int, on_result: Callable[[int], None] | None = None) -> list:
    """``[fn(x) for x in items]``, run in ``jobs`` forked processes (items first to last: put the
    longest first); ``on_result(i)`` as each finishes. An exception in ``fn`` is raised here as in a
    serial run; items a dead worker left unfinished are run in this process."""
    global _WORK
    results: list = [None] * len(items)
    done = [False] * len(items)
    if jobs > 1 and len(items) > 1 and can_fork():
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        _WORK = (fn, items)
        try:
            with ProcessPoolExecutor(min(jobs, len(items)), mp_context=mp.get_context("fork"),
                                     initializer=_worker_init) as ex:
                futures = {ex.submit(_call, i): i for i in range(len(items))}
                try:
                    for f in as_completed(futures):
                        i = futures[f]
                        results[i], done[i] = f.result(), True
                        if on_result:
                            on_result(i)
                except BrokenProcessPool:  # a worker died (e.g. killed for memory): what it left runs below
                    log.warning("a forked worker died; %d of %d item(s) run in this process instead",
                                done.count(False), len(items))
                except BaseException:  # an item's own error: raised now, not after every queued item ran
                    ex.shutdown(wait=False, cancel_futures=True)
                    raise
        finally:
            _WORK = None
    for i, x in enumerate(items):
        if not done[i]:
            results[i] = fn(x)
            if on_result:
                on_result(i)
    return results
