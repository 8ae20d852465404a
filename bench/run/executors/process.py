"""``process``: Each job in its own fresh worker process, up to ``jobs`` at once, from a ``forkserver`` that
    has imported torch, transformer_lens, sae_lens and bench once, so a worker starts in a fraction
    of a second. The driver watches every worker: a crash (signal, ``os._exit``, the kernel's
    out-of-memory killer), an exit without a result, a run past ``timeout_s`` and an RSS above
    ``max_memory_mb`` (sampled by the driver with psutil) each end that worker and become the
    job's error. Peak memory is the worker's RSS above its level at the start of the job
    (``"fresh_process"``: sampled, plus the kernel's high-water mark, which is reset at job start).
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from bench.run.executors.base import (
    MB,
    Executor,
    Job,
    JobResult,
    OnResult,
    adopt_sys_path,
    driver_sys_path,
    error_result,
    execute,
    memory_limit_error,
    one_line,
    pickle_job,
    rss,
)

log = logging.getLogger(__name__)

# Imported once by the forkserver; every worker forks from it with these already loaded.
DEFAULT_PRELOAD = ("torch", "transformer_lens", "sae_lens", "bench", "bench.run.cell", "bench.run.runner")
# Workers that did not even load their job by launch + timeout + this are ended too.
_LOAD_GRACE_S = 60.0
# A worker found dead at its deadline is reported a crash; its exit status is awaited this long.
_EXIT_STATUS_WAIT_S = 30.0


def _gone(ps) -> bool:
    """The worker's process (a psutil.Process, which remembers its start time, so a reused pid is
    no false alive) has ended or is a zombie."""
    if ps is None:
        return False
    try:
        return not ps.is_running() or ps.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def _die_with_parent() -> None:
    """Linux: be killed when our parent (the forkserver, which exits with the driver) dies."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort; not on macOS
        pass


def _process_main(conn, sys_path: list[str], payload: bytes, threads: int | None) -> None:
    """Entry point of a worker process: load the job, report its start, run it, send the outcome."""
    _die_with_parent()
    adopt_sys_path(sys_path)
    try:
        job = pickle.loads(payload)
    except BaseException as exc:  # noqa: BLE001
        conn.send(("done", None, f"the worker could not load the job ({one_line(exc)})", traceback.format_exc(),
                   0.0, math.nan, "fresh_process"))
        return
    if threads and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    conn.send(("start", rss()))
    outcome = execute(job, fresh=True, enforce_limit=False)
    try:
        conn.send(("done", *outcome))
    except Exception as exc:  # noqa: BLE001 - rows that cannot be pickled
        conn.send(("done", None, f"the job's rows cannot be sent back ({one_line(exc)})", "", *outcome[3:]))
    # Done: skip interpreter teardown (multiprocessing would wait for threads the job left running).
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(0)


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown signal"
        why = ", e.g. by the kernel's out-of-memory killer" if -exitcode == signal.SIGKILL else ""
        return f"worker crashed: killed by signal {-exitcode} ({name}){why}"
    return f"worker exited with code {exitcode} before returning a result (os._exit, or native code exiting)"


@dataclass
class _Worker:
    job: Job
    proc: Any
    conn: Any
    launched: float
    ps: Any = None
    started: float | None = None
    base_rss: int | None = None
    peak_rss: int = 0
    outcome: tuple | None = None
    eof: bool = False
    kill_reason: str | None = None
    died_at: float | None = None  # found dead at its deadline, exit status not yet in

    def deadline(self) -> float | None:
        if self.job.timeout_s is None:
            return None
        if self.started is not None:
            return self.started + self.job.timeout_s
        return self.launched + self.job.timeout_s + _LOAD_GRACE_S


class ProcessExecutor(Executor):
    """Each job in a fresh process forked from a preloaded forkserver; at most ``jobs`` at once."""

    name = "process"
    fresh_process_per_job = True

    def __init__(self, jobs: int = 1, address: str | None = None, preload: Sequence[str] = DEFAULT_PRELOAD,
                 poll_s: float = 0.02, threads_per_job: int | None = None):
        import multiprocessing

        super().__init__(jobs, address)
        self.poll_s = poll_s
        # Split the cores among the workers (torch would otherwise start one thread per core in each).
        self.threads_per_job = threads_per_job or (max(1, (os.cpu_count() or 1) // self.jobs) if self.jobs > 1 else None)
        self._ctx = multiprocessing.get_context("forkserver")
        from importlib.util import find_spec

        def importable(mod: str) -> bool:
            try:
                return find_spec(mod) is not None
            except (ImportError, ValueError):
                return False

        # Takes effect when the forkserver starts (once per driver process).
        self._ctx.set_forkserver_preload([m for m in preload if importable(m)])

    def run(self, jobs: Sequence[Job], on_result: OnResult) -> None:
        from multiprocessing.connection import wait

        if not jobs:
            return
        queue = list(jobs)
        queue.reverse()
        running: list[_Worker] = []
        sys_path = driver_sys_path()
        try:
            while queue or running:
                while queue and len(running) < self.jobs:
                    job = queue.pop()
                    worker = self._launch(job, sys_path)
                    if isinstance(worker, JobResult):
                        on_result(job, worker)
                    else:
                        running.append(worker)
                if not running:
                    continue
                wait([w.conn for w in running if not w.eof] + [w.proc.sentinel for w in running], self._wait_s(running))
                for w in list(running):
                    result = self._check(w)
                    if result is not None:
                        running.remove(w)
                        on_result(w.job, result)
        finally:
            for w in running:
                self._kill(w)

    def _wait_s(self, running: list[_Worker]) -> float:
        now = time.monotonic()
        t = 1.0
        for w in running:
            if w.job.max_memory_mb is not None:
                t = min(t, self.poll_s)
            d = w.deadline()
            if w.died_at is not None:  # waiting for a dead worker's exit status
                t = min(t, 0.1)
            elif d is not None:
                t = min(t, max(0.0, d - now))
        return t

    def _launch(self, job: Job, sys_path: list[str]) -> _Worker | JobResult:
        payload, error = pickle_job(job)
        if error:
            return error_result(error, 0.0)
        reader, writer = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=_process_main, args=(writer, sys_path, payload, self.threads_per_job),
                                 name=f"bench-job {job.key}", daemon=False)
        launched = time.monotonic()
        proc.start()
        writer.close()
        worker = _Worker(job, proc, reader, launched)
        try:
            worker.ps = psutil.Process(proc.pid)
        except psutil.Error:
            pass
        return worker

    def _drain(self, w: _Worker) -> None:
        while not w.eof and w.conn.poll():
            try:
                msg = w.conn.recv()
            except (EOFError, OSError):
                w.eof = True
                break
            if msg[0] == "start":
                w.started, w.base_rss = time.monotonic(), msg[1]
                w.peak_rss = w.base_rss
                log.debug("%s: worker %d started in %.3f s", w.job.label, w.proc.pid, w.started - w.launched)
            elif msg[0] == "done":
                w.outcome = msg[1:]

    def _check(self, w: _Worker) -> JobResult | None:
        """The job's result if its worker has finished (or was just ended), else None."""
        self._drain(w)
        if w.proc.exitcode is None and w.outcome is None:
            now = time.monotonic()
            if w.job.max_memory_mb is not None and w.base_rss is not None and w.ps is not None:
                try:
                    w.peak_rss = max(w.peak_rss, w.ps.memory_info().rss)
                except Exception:  # noqa: BLE001 - the process just ended
                    pass
                if w.peak_rss - w.base_rss > w.job.max_memory_mb * MB:
                    w.kill_reason = memory_limit_error(w.job.max_memory_mb, (w.peak_rss - w.base_rss) / MB)
            deadline = w.deadline()
            if w.kill_reason is None and deadline is not None and now > deadline:
                if w.died_at is None and _gone(w.ps):
                    w.died_at = now  # a crash whose exit status the (busy) forkserver has not sent yet
                if w.died_at is None:
                    w.kill_reason = f"exceeded the cell timeout of {w.job.timeout_s:g} s"
                    if w.started is None:
                        w.kill_reason += " (the worker never loaded the job)"
                elif now > w.died_at + _EXIT_STATUS_WAIT_S:
                    w.kill_reason = "worker crashed: its process ended and its exit status never arrived"
            if w.kill_reason is None:
                return None
            self._kill(w)
        elif w.outcome is None:
            w.proc.join()
            self._drain(w)  # a result sent just before exiting
        else:
            w.proc.join(timeout=10)  # it sent its result and is exiting
            if w.proc.exitcode is None:
                self._kill(w)
        w.conn.close()
        wall = time.monotonic() - (w.started or w.launched)
        if w.outcome is not None:
            rows, error, tb, wall, peak, measure = w.outcome
            return JobResult(rows, error, wall, peak, measure, tb)
        # The driver samples a worker's memory only when its job has a limit.
        watched = w.job.max_memory_mb is not None and w.base_rss is not None
        peak = (w.peak_rss - w.base_rss) / MB if watched else math.nan
        return error_result(w.kill_reason or _exit_reason(w.proc.exitcode), wall, peak)

    @staticmethod
    def _kill(w: _Worker) -> None:
        """End the worker and anything it started."""
        if w.ps is not None:
            try:
                for child in w.ps.children(recursive=True):
                    child.kill()
            except Exception:  # noqa: BLE001
                pass
        if w.proc.exitcode is None:
            w.proc.kill()
        w.proc.join()
