"""``ray``: Each job as a Ray task in a fresh worker process (``max_calls=1``, ``max_retries=0``), with the
    job's ``num_cpus`` / ``num_gpus``. Rows travel back as the task's return value (no shared
    filesystem needed). The task first reports that it started; the driver cancels it
    (``ray.cancel(force=True)``) ``timeout_s`` after that. Memory limits are enforced by a
    watchdog thread in the worker (Ray's own memory monitor only protects a whole node): above the
    limit it interrupts the job (the job's error then names the limit and the peak), and ends the
    worker if the job has not stopped within a few seconds. A crashed worker arrives as a
    ``ray.exceptions.WorkerCrashedError``, which does not say why it died. On a busy machine Ray can
    take longer to report it than a cell's timeout; so at a job's deadline the driver looks at the
    worker's process itself (when the executor started the local Ray instance, so the worker is a
    process of this machine: same node, same pid and start time): a worker already gone is reported
    as a crash, never as a timeout.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.errors import UsageError
from bench.run.executors.base import (
    Executor,
    Job,
    JobResult,
    OnResult,
    adopt_sys_path,
    driver_sys_path,
    error_result,
    execute,
    one_line,
    pickle_job,
)

log = logging.getLogger(__name__)

# A force-cancelled Ray task whose cancellation has not arrived after this long is given up on.
_CANCEL_GIVE_UP_S = 60.0


def start_local_ray(num_cpus: int | None = None) -> None:
    """Start a new local Ray instance whose processes talk over 127.0.0.1 only."""
    # With this variable at 0 Ray uses 127.0.0.1 as the node address instead of the machine's
    # network address. Ray reads it when it is imported: the processes ray.init starts (GCS, raylet,
    # workers) see it in their environment; this process may have imported ray already, so its
    # copy of the setting is overridden for the duration of ray.init (later calls in this process
    # take the address from the started node).
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    # Ray starts its workers at niceness 15 (so its own daemons stay responsive). Here the workers are
    # the benchmark: beside any other load they would get a few percent of a core (with two busy loops
    # on two cores every cell of a test run hit its 25 s timeout), so a local instance's workers run
    # at the driver's priority unless the user set RAY_worker_niceness.
    os.environ.setdefault("RAY_worker_niceness", "0")
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
    adopt_sys_path(sys_path)
    try:
        job = pickle.loads(payload)
    except BaseException as exc:  # noqa: BLE001
        yield ("done", None, f"the worker could not load the job ({one_line(exc)})", traceback.format_exc(),
               0.0, math.nan, "fresh_process")
        return
    import psutil

    yield ("started", _node_id(), os.getpid(), psutil.Process().create_time())
    yield ("done", *execute(job, fresh=True, enforce_limit=True))


_RAY_REMOTE = None


def _ray_remote():
    global _RAY_REMOTE
    if _RAY_REMOTE is None:
        import ray

        _RAY_REMOTE = ray.remote(max_calls=1, max_retries=0, num_returns="streaming")(_ray_job)
    return _RAY_REMOTE


def _node_id() -> str | None:
    import ray

    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - no node id: the liveness check is simply not used
        return None


@dataclass
class _Task:
    job: Job
    submitted: float
    started: float | None = None
    cancelled: bool = False  # by the driver: for its timeout, or because its worker crashed
    cancelled_at: float = 0.0
    crashed: bool = False  # the driver found its worker process gone at the deadline
    worker: tuple[int, float] | None = None  # (pid, start time) of the worker, when it is ours to watch


def process_gone(pid: int, create_time: float) -> bool:
    """The process ``pid`` that started at ``create_time`` has ended (or is a zombie its parent has
    not reaped yet). A pid now used by another process counts as gone."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - create_time) > 1e-3 or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def _ray_crash_message(t: _Task) -> str:
    why = "worker crashed (Ray WorkerCrashedError: it died from a signal, os._exit or the out-of-memory killer)"
    return why + _memory_note(t)


def _gone_message(t: _Task) -> str:
    why = "worker crashed (its process ended without a result: a signal such as SIGSEGV, os._exit or the out-of-memory killer)"
    return why + _memory_note(t)


def _memory_note(t: _Task) -> str:
    if t.job.max_memory_mb is None:
        return ""
    return f"; or its job exceeded the memory limit of {t.job.max_memory_mb:g} MB and ignored the interrupt"


class RayExecutor(Executor):
    """Jobs as Ray tasks. Starts a local instance on first use unless Ray is already initialised
    or ``address`` is given; shuts down (or disconnects from) only what it started, in ``close``."""

    name = "ray"
    accepts_address = True
    fresh_process_per_job = True
    schedules_gpus = True

    def __init__(self, jobs: int = 1, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise UsageError("the ray executor needs `pip install sae-circuit-bench[ray]`") from None
        super().__init__(jobs, address)
        self._ray = ray
        self._owned = False
        self._node: str | None = None

    def _ensure_ray(self) -> None:
        ray = self._ray
        if ray.is_initialized():
            return
        if self.address is None:
            start_local_ray(self.jobs)
        else:
            ray.init(address=self.address)  # joining: close() only disconnects
        self._owned = True
        self._node = _node_id()

    def run(self, jobs: Sequence[Job], on_result: OnResult) -> None:
        if not jobs:
            return
        ray = self._ray
        self._ensure_ray()
        remote = _ray_remote()
        sys_path = driver_sys_path()
        tasks: dict[Any, _Task] = {}
        try:
            for job in jobs:
                payload, error = pickle_job(job)
                if error:
                    on_result(job, error_result(error, 0.0))
                    continue
                gen = remote.options(num_cpus=job.num_cpus, num_gpus=job.num_gpus, name=job.label[:200]).remote(sys_path, payload)
                tasks[gen] = _Task(job, time.monotonic())
            while tasks:
                ready, _ = ray.wait(list(tasks), num_returns=1, timeout=self._wait_s(tasks.values()))
                if ready:  # read everything that has arrived before judging any deadline
                    ready, _ = ray.wait(list(tasks), num_returns=len(tasks), timeout=0)
                for gen in ready:
                    result = self._receive(gen, tasks[gen])
                    if result is not None:
                        del tasks[gen]
                        on_result(result[0], result[1])
                now = time.monotonic()
                for gen, t in list(tasks.items()):
                    if self.at_deadline(t, now):
                        ray.cancel(gen, force=True)
                    elif t.cancelled and now > t.cancelled_at + _CANCEL_GIVE_UP_S:  # the cancel never came back
                        del tasks[gen]
                        on_result(t.job, error_result(self._cancel_reason(t), now - t.started))
        finally:
            for gen, t in tasks.items():
                if not t.cancelled:
                    try:
                        ray.cancel(gen, force=True)
                    except Exception:  # noqa: BLE001
                        pass

    @staticmethod
    def _timed_out(t: _Task, now: float) -> bool:
        return t.job.timeout_s is not None and now > t.started + t.job.timeout_s

    @classmethod
    def at_deadline(cls, t: _Task, now: float) -> bool:
        """Whether to cancel ``t`` now (its timeout has passed). A worker already gone at that moment
        crashed, and Ray was slow to say so: the job is then reported as a crash, not a timeout."""
        if t.started is None or t.cancelled or not cls._timed_out(t, now):
            return False
        t.crashed = t.worker is not None and process_gone(*t.worker)
        t.cancelled, t.cancelled_at = True, now
        return True

    @staticmethod
    def _cancel_reason(t: _Task) -> str:
        return _gone_message(t) if t.crashed else f"exceeded the cell timeout of {t.job.timeout_s:g} s"

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
            return t.job, error_result("the Ray task ended without a result", wall)
        except (exc_mod.TaskCancelledError, exc_mod.WorkerCrashedError) as exc:
            if t.cancelled:  # by us: for its timeout, or after we saw its worker gone
                return t.job, error_result(self._cancel_reason(t), wall)
            if isinstance(exc, exc_mod.TaskCancelledError):
                return t.job, error_result("the Ray task was cancelled", wall)
            return t.job, error_result(_ray_crash_message(t), wall)
        except exc_mod.OutOfMemoryError:
            return t.job, error_result("worker killed by Ray's memory monitor (the node ran out of memory)", wall)
        except exc_mod.RayError as exc:
            return t.job, error_result(f"Ray failed to run the job: {one_line(exc)}", wall)
        if msg[0] == "started":
            t.started = now
            # watch the worker's process only where it is surely ours: a local instance we started
            if self._owned and self.address is None and msg[1] is not None and msg[1] == self._node:
                t.worker = (msg[2], msg[3])
            return None
        rows, error, tb, wall, peak, measure = msg[1:]
        return t.job, JobResult(rows, error, wall, peak, measure, tb)

    def close(self) -> None:
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()
        self._owned = False
