"""The executor interface and what every executor shares: a :class:`Job`, its :class:`JobResult`,
and measuring one job's wall time and peak memory (:func:`execute`).

A :class:`Job` names a module-level function and its argument; the function returns the cell's
result rows. An executor runs a batch of jobs and calls ``on_result(job, result)`` in the driver
process as each one finishes, so the driver can write the rows at once: a run killed later loses
nothing that finished. A failing job never stops the others; its :class:`JobResult` has
``rows=None`` and a one-line ``error``.

Job functions must be importable by module path in the worker: the driver's ``sys.path`` is sent
with each job and appended to the worker's, so modules found by the driver (including a test
directory pytest put on the path) are found by local workers too. Workers on other machines of a
Ray cluster need the package installed.

When a job uses CUDA, ``peak_memory_mb`` is ``torch.cuda.max_memory_allocated`` above the level at
job start (``memory_measure="cuda"``); limits still apply to host RSS.
"""

from __future__ import annotations

import abc
import logging
import math
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

log = logging.getLogger(__name__)

MB = 2**20
# A worker whose job ignores the memory watchdog's interrupt is ended this long after it.
_HARD_STOP_GRACE_S = 5.0


@dataclass(frozen=True)
class Job:
    key: str  # unique id of the cell
    label: str  # human label, e.g. "ioi / binary_mask / seed 1"
    fn: Callable[[Any], list[dict]]  # module-level function (pickled by reference) returning rows
    arg: Any  # picklable argument
    timeout_s: float | None = None
    max_memory_mb: float | None = None
    num_cpus: float = 1
    num_gpus: float = 0


@dataclass
class JobResult:
    rows: list[dict] | None  # None on failure
    error: str | None  # one line; None on success
    wall_seconds: float
    peak_memory_mb: float = math.nan  # above the level at job start; NaN if unknown
    memory_measure: str = ""  # "fresh_process" | "shared_process" | "cuda"
    traceback: str = ""  # the worker's traceback of a raised exception (for the log), else ""

    @property
    def ok(self) -> bool:
        return self.error is None


OnResult = Callable[[Job, JobResult], None]


class Executor(abc.ABC):
    """Runs a batch of independent jobs and reports each result in the driver as it arrives.

    Subclass it, give it a ``name``, implement :meth:`run`, and register the class under the
    entry-point group ``sae_circuit_bench.executors`` (as the built-ins do in ``pyproject.toml``):
    ``--executor NAME`` then offers it. ``jobs`` is how many jobs may run at once; ``address`` a
    cluster to join (only for executors with ``accepts_address``).
    """

    name: ClassVar[str] = ""
    accepts_address: ClassVar[bool] = False  # joins a cluster given by an address
    fresh_process_per_job: ClassVar[bool] = False  # each job in a process of its own (its memory is its own)
    schedules_gpus: ClassVar[bool] = False  # a job asks the executor for a GPU (Job.num_gpus)

    def __init__(self, jobs: int = 1, address: str | None = None):
        self.jobs = max(1, int(jobs))
        self.address = address

    @abc.abstractmethod
    def run(self, jobs: Sequence[Job], on_result: OnResult) -> None:
        """Run every job; call ``on_result(job, result)`` in this process once per job, as each ends.
        A failing job becomes a :class:`JobResult` with an error, never an exception here."""

    def close(self) -> None:
        """Release what the executor started (workers, a local cluster)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MemoryLimitExceeded(BaseException):
    """Raised inside a job by the memory watchdog (a BaseException, so ``except Exception`` in
    method code does not swallow it)."""


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _reset_high_water_mark() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux); True if that worked."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _cuda_in_use():
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return torch
    except Exception:  # noqa: BLE001 - a broken CUDA setup just means "not measurable"
        return None
    return None


class _Meter:
    """Peak memory of one job: RSS above the level at its start, from a sampling thread and the
    kernel's high-water mark (reset at job start; Linux), or the CUDA peak when the job used CUDA.
    ``fresh``: this process exists for the job. ``limit_mb``: interrupt the job (and end the
    process if it does not stop) when its RSS goes that far above the start."""

    def __init__(self, fresh: bool, limit_mb: float | None = None, interval_s: float = 0.005):
        self.fresh = fresh
        self.limit_mb = limit_mb
        self.interval_s = interval_s
        self.exceeded = False
        self.job_running = False

    def __enter__(self) -> _Meter:
        import psutil

        self._proc = psutil.Process()
        self._hwm = _reset_high_water_mark()
        self.base = self._proc.memory_info().rss
        self.peak = self.base
        torch = _cuda_in_use()
        self._cuda_base = 0
        if torch is not None:
            torch.cuda.reset_peak_memory_stats()
            self._cuda_base = torch.cuda.memory_allocated()
        self._main = threading.current_thread() is threading.main_thread()
        self._old_handler = None
        if self.limit_mb is not None and self._main:
            self._old_handler = signal.signal(signal.SIGUSR2, self._interrupt)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="bench-memory-meter", daemon=True)
        self._thread.start()
        return self

    def _interrupt(self, signum, frame) -> None:
        if self.job_running:  # once: never while execute is already handling it
            self.job_running = False
            raise MemoryLimitExceeded()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            if self.limit_mb is not None and not self.exceeded and self.peak - self.base > self.limit_mb * MB:
                self.exceeded = True
                self._stop_job()
                return
            self._stop.wait(self.interval_s)

    def _stop_job(self) -> None:
        # Signal the main thread (its handler raises MemoryLimitExceeded in the job). Repeated: a
        # signal that lands just before a blocking call (time.sleep) does not interrupt it.
        deadline = time.monotonic() + _HARD_STOP_GRACE_S
        while time.monotonic() < deadline:
            if self._main and self.job_running:
                signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR2)
            if self._stop.wait(0.1):
                return
        os.write(2, f"bench: job exceeded its memory limit of {self.limit_mb:g} MB and did not stop; ending the worker\n".encode())
        os._exit(70)

    def __exit__(self, *exc) -> None:
        self.job_running = False
        self._stop.set()
        self._thread.join()
        if self._old_handler is not None:
            signal.signal(signal.SIGUSR2, self._old_handler)
        self.peak = max(self.peak, self._proc.memory_info().rss)
        if self._hwm:
            import resource

            self.peak = max(self.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        torch = _cuda_in_use()
        if torch is not None:
            self.measure = "cuda"
            self.peak_mb = max(0.0, (torch.cuda.max_memory_allocated() - self._cuda_base) / MB)
        else:
            self.measure = "fresh_process" if self.fresh else "shared_process"
            self.peak_mb = max(0.0, (self.peak - self.base) / MB)
        self.rss_peak_mb = max(0.0, (self.peak - self.base) / MB)


def _check_rows(rows: Any) -> str | None:
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return f"the job returned {type(rows).__name__}, not a list of dicts"
    return None


def execute(job: Job, fresh: bool, enforce_limit: bool, catch: tuple = (BaseException,)) -> tuple:
    """Run one job here. Returns (rows, error, traceback, wall_seconds, peak_memory_mb, measure)."""
    rows = error = None
    tb = ""
    meter = _Meter(fresh, job.max_memory_mb if enforce_limit else None)
    with meter:
        t0 = time.perf_counter()
        try:
            meter.job_running = True
            rows = job.fn(job.arg)
            meter.job_running = False
        except MemoryLimitExceeded:
            pass
        except catch as exc:
            error, tb = one_line(exc), traceback.format_exc()
        finally:
            meter.job_running = False
        wall = time.perf_counter() - t0
    if meter.exceeded:
        rows, error = None, memory_limit_error(job.max_memory_mb, meter.rss_peak_mb)
    elif error is None and (bad := _check_rows(rows)):
        rows, error = None, bad
    return rows, error, tb, wall, meter.peak_mb, meter.measure


def adopt_sys_path(paths: Sequence[str]) -> None:
    for p in paths:
        if p not in sys.path:
            sys.path.append(p)


def driver_sys_path() -> list[str]:
    return [p or os.getcwd() for p in sys.path]


def memory_limit_error(limit_mb: float, peak_mb: float) -> str:
    """The one message of a job stopped for memory, whichever executor stopped it (peak to 0.1 MB,
    so a job stopped just past the limit never reads as at it)."""
    return f"exceeded the memory limit of {limit_mb:g} MB (peak {peak_mb:.1f} MB)"


def error_result(job_error: str, wall: float, peak_mb: float = math.nan, measure: str = "fresh_process") -> JobResult:
    return JobResult(rows=None, error=job_error, wall_seconds=wall, peak_memory_mb=peak_mb, memory_measure=measure)


def pickle_job(job: Job) -> tuple[bytes | None, str | None]:
    try:
        return pickle.dumps(job), None
    except Exception as exc:  # noqa: BLE001 - a lambda or local function as fn, an unpicklable arg
        return None, f"the job cannot be sent to a worker ({one_line(exc)}); its fn must be a module-level function"
