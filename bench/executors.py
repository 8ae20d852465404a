"""Executors: run independent jobs (benchmark cells) inline, in fresh worker processes, or as Ray tasks.

A :class:`Job` names a module-level function and its argument; the function returns the cell's
result rows. An executor runs a batch of jobs and calls ``on_result(job, result)`` in the driver
process as each one finishes, so the driver can write the rows at once: a run killed later loses
nothing that finished. A failing job never stops the others; its :class:`JobResult` has
``rows=None`` and a one-line ``error``.

``inline``
    One job after another in this process. An exception becomes the job's error. Timeouts and
    memory limits are not enforced (nothing can be stopped safely in the driver). Peak memory is
    the resident set size (RSS) above its level at the start of the job, sampled by a thread and
    read from the kernel's peak-RSS counter, which is reset at job start
    (``memory_measure="shared_process"``: the driver's other memory use counts too).
``process``
    Each job in its own fresh worker process, up to ``jobs`` at once, from a ``forkserver`` that
    has imported torch, transformer_lens, sae_lens and bench once, so a worker starts in a fraction
    of a second. The driver watches every worker: a crash (signal, ``os._exit``, the kernel's
    out-of-memory killer), an exit without a result, a run past ``timeout_s`` and an RSS above
    ``max_memory_mb`` (sampled by the driver with psutil) each end that worker and become the
    job's error. Peak memory is the worker's RSS above its level at the start of the job
    (``"fresh_process"``: sampled, plus the kernel's high-water mark, which is reset at job start).
``ray``
    Each job as a Ray task in a fresh worker process (``max_calls=1``, ``max_retries=0``), with the
    job's ``num_cpus`` / ``num_gpus``. Rows travel back as the task's return value (no shared
    filesystem needed). The task first reports that it started; the driver cancels it
    (``ray.cancel(force=True)``) ``timeout_s`` after that. Memory limits are enforced by a
    watchdog thread in the worker (Ray's own memory monitor only protects a whole node): above the
    limit it interrupts the job (the job's error then names the limit and the peak), and ends the
    worker if the job has not stopped within a few seconds. A crashed worker arrives as a
    ``ray.exceptions.WorkerCrashedError``, which does not say why it died.

When a job uses CUDA, ``peak_memory_mb`` is ``torch.cuda.max_memory_allocated`` above the level at
job start (``memory_measure="cuda"``); limits still apply to host RSS.

Job functions must be importable by module path in the worker: the driver's ``sys.path`` is sent
with each job and appended to the worker's, so modules found by the driver (including a test
directory pytest put on the path) are found by local workers too. Workers on other machines of a
Ray cluster need the package installed.
"""

from __future__ import annotations

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
from typing import Any, Protocol

from bench.errors import UsageError, did_you_mean

log = logging.getLogger(__name__)

EXECUTORS = ("inline", "process", "ray")
# Imported once by the forkserver; every worker forks from it with these already loaded.
DEFAULT_PRELOAD = ("torch", "transformer_lens", "sae_lens", "bench", "bench.harness", "bench.runner")
MB = 2**20
# A worker whose job ignores the memory watchdog's interrupt is ended this long after it.
_HARD_STOP_GRACE_S = 5.0
# Workers that did not even load their job by launch + timeout + this are ended too.
_LOAD_GRACE_S = 60.0
# A force-cancelled Ray task whose cancellation has not arrived after this long is given up on.
_CANCEL_GIVE_UP_S = 60.0


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


class Executor(Protocol):
    name: str

    def run(self, jobs: Sequence[Job], on_result: OnResult) -> None: ...

    def close(self) -> None: ...


class MemoryLimitExceeded(BaseException):
    """Raised inside a job by the memory watchdog (a BaseException, so ``except Exception`` in
    method code does not swallow it)."""


def make_executor(name: str, jobs: int = 1, ray_address: str | None = None) -> Executor:
    """``jobs``: workers at once (``process``), CPUs of the local Ray instance (``ray``); 0 means
    one per CPU. ``ray_address``: ``None`` starts a local Ray instance for the executor's lifetime;
    ``"auto"`` or an address joins an existing cluster (never shut down by us)."""
    if name not in EXECUTORS:
        raise UsageError(did_you_mean(name, EXECUTORS, "executor"))
    if jobs is None or jobs == 0:
        jobs = os.cpu_count() or 1
    if jobs < 0:
        raise UsageError(f"--jobs must be 0 (one per CPU) or a positive number of workers, not {jobs}")
    if ray_address is not None and name != "ray":
        raise UsageError(f"--ray-address applies only to --executor ray, not {name!r}")
    if name == "inline":
        return InlineExecutor()
    if name == "process":
        return ProcessExecutor(jobs)
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UsageError("the ray executor needs `pip install sae-circuit-bench[ray]`") from None
    return RayExecutor(jobs, ray_address)


# --------------------------------------------------------------------------------------------
# Measuring one job (in the driver for inline, in the worker otherwise)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def _rss() -> int:
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
        if self.job_running:  # once: never while _execute is already handling it
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


def _execute(job: Job, fresh: bool, enforce_limit: bool, catch: tuple = (BaseException,)) -> tuple:
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
            error, tb = _one_line(exc), traceback.format_exc()
        finally:
            meter.job_running = False
        wall = time.perf_counter() - t0
    if meter.exceeded:
        rows, error = None, memory_limit_error(job.max_memory_mb, meter.rss_peak_mb)
    elif error is None and (bad := _check_rows(rows)):
        rows, error = None, bad
    return rows, error, tb, wall, meter.peak_mb, meter.measure


def _adopt_sys_path(paths: Sequence[str]) -> None:
    for p in paths:
        if p not in sys.path:
            sys.path.append(p)


def _driver_sys_path() -> list[str]:
    return [p or os.getcwd() for p in sys.path]


def memory_limit_error(limit_mb: float, peak_mb: float) -> str:
    """The one message of a job stopped for memory, whichever executor stopped it (peak to 0.1 MB,
    so a job stopped just past the limit never reads as at it)."""
    return f"exceeded the memory limit of {limit_mb:g} MB (peak {peak_mb:.1f} MB)"


def _error(job_error: str, wall: float, peak_mb: float = math.nan, measure: str = "fresh_process") -> JobResult:
    return JobResult(rows=None, error=job_error, wall_seconds=wall, peak_memory_mb=peak_mb, memory_measure=measure)


def _pickle_job(job: Job) -> tuple[bytes | None, str | None]:
    try:
        return pickle.dumps(job), None
    except Exception as exc:  # noqa: BLE001 - a lambda or local function as fn, an unpicklable arg
        return None, f"the job cannot be sent to a worker ({_one_line(exc)}); its fn must be a module-level function"


# --------------------------------------------------------------------------------------------
# inline


class InlineExecutor:
    name = "inline"

    def run(self, jobs: Sequence[Job], on_result: OnResult) -> None:
        for job in jobs:
            if job.timeout_s is not None or job.max_memory_mb is not None:
                log.debug("%s: the inline executor does not enforce timeouts or memory limits", job.label)
            rows, error, tb, wall, peak, measure = _execute(job, fresh=False, enforce_limit=False,
                                                            catch=(Exception, SystemExit))
            on_result(job, JobResult(rows, error, wall, peak, measure, tb))

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# process


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
    _adopt_sys_path(sys_path)
    try:
        job = pickle.loads(payload)
    except BaseException as exc:  # noqa: BLE001
        conn.send(("done", None, f"the worker could not load the job ({_one_line(exc)})", traceback.format_exc(),
                   0.0, math.nan, "fresh_process"))
        return
    if threads and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    conn.send(("start", _rss()))
    outcome = _execute(job, fresh=True, enforce_limit=False)
    try:
        conn.send(("done", *outcome))
    except Exception as exc:  # noqa: BLE001 - rows that cannot be pickled
        conn.send(("done", None, f"the job's rows cannot be sent back ({_one_line(exc)})", "", *outcome[3:]))
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

    def deadline(self) -> float | None:
        if self.job.timeout_s is None:
            return None
        if self.started is not None:
            return self.started + self.job.timeout_s
        return self.launched + self.job.timeout_s + _LOAD_GRACE_S


class ProcessExecutor:
    """Each job in a fresh process forked from a preloaded forkserver; at most ``jobs`` at once."""

    name = "process"

    def __init__(self, jobs: int = 1, preload: Sequence[str] = DEFAULT_PRELOAD, poll_s: float = 0.02,
                 threads_per_job: int | None = None):
        import multiprocessing

        self.jobs = max(1, int(jobs))
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
        sys_path = _driver_sys_path()
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
            if d is not None:
                t = min(t, max(0.0, d - now))
        return t

    def _launch(self, job: Job, sys_path: list[str]) -> _Worker | JobResult:
        import psutil

        payload, error = _pickle_job(job)
        if error:
            return _error(error, 0.0)
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
                w.kill_reason = f"exceeded the cell timeout of {w.job.timeout_s:g} s"
                if w.started is None:
                    w.kill_reason += " (the worker never loaded the job)"
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
        return _error(w.kill_reason or _exit_reason(w.proc.exitcode), wall, peak)

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

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# ray


def start_local_ray(num_cpus: int | None = None) -> None:
    """Start a new local Ray instance whose processes talk over 127.0.0.1 only."""
    # With this variable at 0 Ray uses 127.0.0.1 as the node address instead of the machine's
    # network address. Ray reads it when it is imported: the processes ray.init starts (GCS, raylet,
    # workers) see it in their environment; this process may have imported ray already, so its
    # copy of the setting is overridden for the duration of ray.init (later calls in this process
    # take the address from the started node).
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        # address="local": a new instance even if RAY_ADDRESS or a `ray start` cluster is around.
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def _ray_job(sys_path: list[str], payload: bytes):
    """The Ray task (a streaming generator): report the start, then the outcome."""
    _adopt_sys_path(sys_path)
    try:
        job = pickle.loads(payload)
    except BaseException as exc:  # noqa: BLE001
        yield ("done", None, f"the worker could not load the job ({_one_line(exc)})", traceback.format_exc(),
               0.0, math.nan, "fresh_process")
        return
    yield ("started", os.getpid())
    yield ("done", *_execute(job, fresh=True, enforce_limit=True))


_RAY_REMOTE = None


def _ray_remote():
    global _RAY_REMOTE
    if _RAY_REMOTE is None:
        import ray

        _RAY_REMOTE = ray.remote(max_calls=1, max_retries=0, num_returns="streaming")(_ray_job)
    return _RAY_REMOTE


@dataclass
class _Task:
    job: Job
    submitted: float
    started: float | None = None
    cancelled: bool = False
    cancelled_at: float = 0.0


class RayExecutor:
    """Jobs as Ray tasks. Starts a local instance on first use unless Ray is already initialised
    or ``address`` is given; shuts down (or disconnects from) only what it started, in ``close``."""

    name = "ray"

    def __init__(self, jobs: int = 1, address: str | None = None):
        import ray

        self._ray = ray
        self.jobs = max(1, int(jobs))
        self.address = address
        self._owned = False

    def _ensure_ray(self) -> None:
        ray = self._ray
        if ray.is_initialized():
            return
        if self.address is None:
            start_local_ray(self.jobs)
        else:
            ray.init(address=self.address)  # joining: close() only disconnects
        self._owned = True

    def run(self, jobs: Sequence[Job], on_result: OnResult) -> None:
        if not jobs:
            return
        ray = self._ray
        self._ensure_ray()
        remote = _ray_remote()
        sys_path = _driver_sys_path()
        tasks: dict[Any, _Task] = {}
        try:
            for job in jobs:
                payload, error = _pickle_job(job)
                if error:
                    on_result(job, _error(error, 0.0))
                    continue
                gen = remote.options(num_cpus=job.num_cpus, num_gpus=job.num_gpus, name=job.label[:200]).remote(sys_path, payload)
                tasks[gen] = _Task(job, time.monotonic())
            while tasks:
                ready, _ = ray.wait(list(tasks), num_returns=1, timeout=self._wait_s(tasks.values()))
                for gen in ready:
                    result = self._receive(gen, tasks[gen])
                    if result is not None:
                        del tasks[gen]
                        on_result(result[0], result[1])
                now = time.monotonic()
                for gen, t in list(tasks.items()):
                    if t.started is not None and t.job.timeout_s is not None and not t.cancelled \
                            and now > t.started + t.job.timeout_s:
                        t.cancelled = True
                        t.cancelled_at = now
                        ray.cancel(gen, force=True)
                    elif t.cancelled and now > t.cancelled_at + _CANCEL_GIVE_UP_S:  # the cancel never came back
                        del tasks[gen]
                        on_result(t.job, _error(f"exceeded the cell timeout of {t.job.timeout_s:g} s", now - t.started))
        finally:
            for gen, t in tasks.items():
                if not t.cancelled:
                    try:
                        ray.cancel(gen, force=True)
                    except Exception:  # noqa: BLE001
                        pass

    @staticmethod
    def _wait_s(tasks) -> float:
        now = time.monotonic()
        t = 1.0
        for task in tasks:
            if task.started is not None and task.job.timeout_s is not None and not task.cancelled:
                t = min(t, max(0.0, task.started + task.job.timeout_s - now))
        return t

    def _receive(self, gen, t: _Task) -> tuple[Job, JobResult] | None:
        ray = self._ray
        exc_mod = ray.exceptions
        now = time.monotonic()
        wall = now - (t.started or t.submitted)
        try:
            msg = ray.get(next(gen))
        except StopIteration:
            return t.job, _error("the Ray task ended without a result", wall)
        except exc_mod.TaskCancelledError:
            why = f"exceeded the cell timeout of {t.job.timeout_s:g} s" if t.cancelled else "the Ray task was cancelled"
            return t.job, _error(why, wall)
        except exc_mod.OutOfMemoryError:
            return t.job, _error("worker killed by Ray's memory monitor (the node ran out of memory)", wall)
        except exc_mod.WorkerCrashedError:
            why = "worker crashed (Ray WorkerCrashedError: it died from a signal, os._exit or the out-of-memory killer)"
            if t.job.max_memory_mb is not None:
                why += f"; or its job exceeded the memory limit of {t.job.max_memory_mb:g} MB and ignored the interrupt"
            return t.job, _error(why, wall)
        except exc_mod.RayError as exc:
            return t.job, _error(f"Ray failed to run the job: {_one_line(exc)}", wall)
        if msg[0] == "started":
            t.started = now
            return None
        rows, error, tb, wall, peak, measure = msg[1:]
        return t.job, JobResult(rows, error, wall, peak, measure, tb)

    def close(self) -> None:
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()
        self._owned = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
