"""The executor layer (bench/run/executors/): inline, process (forkserver workers) and ray.

Job functions live in tests/executor_jobs.py so that workers import them by name. The Ray tests
share one local Ray instance (module-scoped fixture); ray is installed by the `test` extra.
"""

from __future__ import annotations

import math
import os
import re
import sys

import psutil
import pytest

from bench.errors import UsageError
from bench.run.executors import make_executor
from bench.run.executors.base import Job, JobResult
from tests import executor_jobs as J

MEM_LIMIT_MB = 200


def run(executor, jobs: list[Job]) -> dict[str, JobResult]:
    """Run ``jobs``; check on_result is called once per job, in this (the driver) process."""
    seen: list[str] = []
    results: dict[str, JobResult] = {}
    driver = os.getpid()

    def on_result(job: Job, result: JobResult) -> None:
        assert os.getpid() == driver
        seen.append(job.key)
        results[job.key] = result

    executor.run(jobs, on_result)
    assert sorted(seen) == sorted(j.key for j in jobs), "on_result must be called exactly once per job"
    return results


# --------------------------------------------------------------------------------------------
# fixtures: one process executor (jobs=2) and one Ray executor with its local instance per module


@pytest.fixture(scope="module")
def process_executor():
    with make_executor("process", jobs=2) as ex:
        yield ex


@pytest.fixture(scope="module")
def ray_executor():
    ray = pytest.importorskip("ray")  # a guard only: the `test` extra installs ray, CI runs these
    assert not ray.is_initialized()
    ex = make_executor("ray", jobs=2)  # starts its own local instance on first use
    yield ex
    ex.close()
    assert not ray.is_initialized(), "the executor must shut down the local Ray instance it started"


@pytest.fixture(params=["process", "ray"])
def executor(request):
    return request.getfixturevalue(f"{request.param}_executor")


# --------------------------------------------------------------------------------------------
# make_executor


def test_unknown_executor_is_a_usage_error_with_a_suggestion():
    with pytest.raises(UsageError, match=r"unknown executor 'proces'\. Did you mean 'process'\?"):
        make_executor("proces")


def test_bad_jobs_and_misplaced_ray_address_are_usage_errors():
    with pytest.raises(UsageError, match="--jobs"):
        make_executor("process", jobs=-1)
    with pytest.raises(UsageError, match="--ray-address"):
        make_executor("process", jobs=1, ray_address="auto")


def test_ray_executor_without_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(UsageError, match=re.escape("the ray executor needs `pip install sae-circuit-bench[ray]`")):
        make_executor("ray")


# --------------------------------------------------------------------------------------------
# inline


def test_inline_runs_jobs_and_turns_exceptions_into_error_results():
    res = run(make_executor("inline"), [
        Job("ok", "ok", J.rows, 2), Job("raise", "raise", J.raise_value_error, 3),
        # the block is held 0.1 s: building it holds the GIL, so with no hold the 5 ms RSS sampler
        # could only see it if it happened to run in the instant before the job returned (CI once read 10 MB)
        Job("notrows", "notrows", J.not_rows, 0), Job("mem", "mem", J.allocate, (100, 0.1)),
    ])
    assert res["ok"].rows == J.rows(2) and res["ok"].error is None
    assert res["raise"].rows is None and res["raise"].error == "ValueError: bad input 3"
    assert "ValueError" in res["raise"].traceback
    assert res["notrows"].rows is None and "not a list of dicts" in res["notrows"].error
    assert res["mem"].memory_measure == "shared_process"
    assert 90 <= res["mem"].peak_memory_mb < 400


# --------------------------------------------------------------------------------------------
# process and ray


def test_rows_come_back_identical_to_inline(executor):
    jobs = [Job(f"r{i}", f"rows {i}", J.rows, i) for i in (1, 2, 5)]
    expected = run(make_executor("inline"), jobs)
    got = run(executor, jobs)
    for job in jobs:
        assert got[job.key].error is None, got[job.key].error
        assert got[job.key].rows == expected[job.key].rows
        assert got[job.key].memory_measure == "fresh_process"


def test_each_failure_kind_is_an_error_result_and_the_other_jobs_succeed(executor):
    jobs = [
        Job("ok1", "ok 1", J.rows, 1),
        Job("exit", "os._exit(1)", J.exit_hard, 1),
        Job("segv", "segfault", J.segfault, 0),
        Job("mem", "400 MB over a 200 MB limit", J.allocate, (400, 20), max_memory_mb=MEM_LIMIT_MB),
        Job("slow", "sleeps past its timeout", J.sleep, 30, timeout_s=1),
        Job("raise", "raises", J.raise_value_error, 3),
        Job("ok2", "ok 2", J.rows, 2),
    ]
    res = run(executor, jobs)
    assert res["ok1"].rows == J.rows(1) and res["ok2"].rows == J.rows(2)
    failed = {k: r for k, r in res.items() if k not in ("ok1", "ok2")}
    for key, r in failed.items():
        assert r.rows is None and r.error and "\n" not in r.error, (key, r)
    if executor.name == "process":
        assert res["exit"].error.startswith("worker exited with code 1 before returning a result")
        assert res["segv"].error == "worker crashed: killed by signal 11 (SIGSEGV)"
    else:  # Ray reports a dead worker without its exit code or signal
        assert res["exit"].error.startswith("worker crashed (")
        assert res["segv"].error.startswith("worker crashed (")
    # the peak (one decimal) is past the limit, and no more than the job's 400 MB block plus 100 MB of
    # interpreter slack (a busy watchdog may see the whole block, so "below 400" would be flaky)
    m = re.fullmatch(r"exceeded the memory limit of 200 MB \(peak (\d+\.\d) MB\)", res["mem"].error)
    assert m and MEM_LIMIT_MB <= float(m.group(1)) < 500, res["mem"].error
    assert res["mem"].wall_seconds < 15  # ended by the watchdog, not after its 20 s
    assert res["slow"].error == "exceeded the cell timeout of 1 s"
    assert 1 <= res["slow"].wall_seconds < 15
    assert res["raise"].error == "ValueError: bad input 3"


def test_two_jobs_overlap_in_time_in_fresh_workers(executor):
    res = run(executor, [Job(f"t{i}", f"t{i}", J.timestamps, 1.5) for i in range(2)])
    spans = [res[f"t{i}"].rows[0] for i in range(2)]
    assert max(s["start"] for s in spans) < min(s["end"] for s in spans), "jobs=2 must run two jobs at once"
    assert len({s["pid"] for s in spans} | {os.getpid()}) == 3, "each job runs in its own worker process"


def test_peak_memory_is_the_jobs_own_in_a_fresh_worker(executor):
    res = run(executor, [Job("big", "big", J.allocate, (100, 0)), Job("small", "small", J.rows, 1)])
    assert res["big"].memory_measure == res["small"].memory_measure == "fresh_process"
    assert 95 <= res["big"].peak_memory_mb < 200, res["big"].peak_memory_mb
    assert 0 <= res["small"].peak_memory_mb < 30, res["small"].peak_memory_mb


def test_a_job_that_cannot_be_pickled_fails_alone(executor):
    res = run(executor, [Job("lambda", "lambda", lambda arg: [], 0), Job("ok", "ok", J.rows, 3)])
    assert res["lambda"].rows is None and "cannot be sent to a worker" in res["lambda"].error
    assert res["ok"].rows == J.rows(3)


# --------------------------------------------------------------------------------------------
# process only


def test_process_workers_fork_from_a_server_with_torch_already_imported(process_executor):
    res = run(process_executor, [Job("pre", "pre", J.torch_was_preloaded, 0)])
    assert res["pre"].rows == [{"metric": "torch_preloaded", "value": 1.0}]


def test_process_worker_runs_multithreaded_torch_without_deadlock():
    with make_executor("process", jobs=1) as ex:  # jobs=1: torch keeps its default thread count
        res = run(ex, [Job(f"mm{i}", "matmul", J.torch_matmul, 400, timeout_s=60) for i in range(2)])
    for r in res.values():
        assert r.error is None, r.error
        assert math.isfinite(r.rows[0]["value"])


def _forkserver_children() -> list[psutil.Process]:
    out = []
    for p in psutil.Process().children():
        try:
            if "forkserver" in " ".join(p.cmdline()):
                out.extend(c for c in p.children() if c.status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            pass
    return out


def test_process_driver_error_stops_the_run_and_ends_its_workers(process_executor):
    calls = []

    def on_result(job, result):
        calls.append(job.key)
        raise RuntimeError("disk full")

    jobs = [Job("fast", "fast", J.rows, 1), Job("slow", "slow", J.sleep, 60)]
    with pytest.raises(RuntimeError, match="disk full"):
        process_executor.run(jobs, on_result)
    assert calls == ["fast"]
    assert _forkserver_children() == [], "workers must not outlive a failed run"


# --------------------------------------------------------------------------------------------
# ray only


def _ip(addr) -> str:
    return addr.ip.removeprefix("::ffff:")


def test_ray_local_instance_talks_over_loopback_only(ray_executor):
    import ray

    res = run(ray_executor, [Job("ip", "ip", J.node_ip, 0)])
    assert res["ip"].rows == [{"metric": "node_ip", "text": "127.0.0.1"}]
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    conns = []
    for p in psutil.Process().children(recursive=True):
        try:
            conns += [(p.name(), c) for c in p.net_connections(kind="inet")]
        except psutil.Error:
            pass
    assert conns, "expected the Ray processes' sockets"
    outside = [(name, c) for name, c in conns if _ip(c.laddr) != "127.0.0.1" or (c.raddr and _ip(c.raddr) != "127.0.0.1")]
    assert outside == []


def test_ray_executor_leaves_an_instance_it_did_not_start_running(ray_executor):
    import ray

    run(ray_executor, [Job("warm", "warm", J.rows, 1)])  # the shared instance is up
    with make_executor("ray", jobs=1) as other:
        assert run(other, [Job("ok", "ok", J.rows, 4)])["ok"].rows == J.rows(4)
    assert ray.is_initialized()


# --------------------------------------------------------------------------------------------
# executors are registered like methods; a worker found dead at its deadline is a crash


def test_a_plugin_executor_is_offered_by_the_cli_and_built_by_name(monkeypatch):
    from importlib.metadata import EntryPoint

    from bench import registry
    from bench.cli.main import build_parser

    real = registry.entry_points

    def fake(group):
        extra = [EntryPoint("serial", "tests.executor_jobs:SerialExecutor", group)] if group == registry.GROUPS["executor"] else []
        return [*real(group=group), *extra]

    monkeypatch.setattr(registry, "entry_points", fake)
    assert list(registry.entries("executor"))[:3] == ["inline", "process", "ray"]  # pyproject.toml's order
    run_parser = build_parser()._subparsers._group_actions[0].choices["run"]
    executor = next(a for a in run_parser._actions if a.dest == "executor")
    assert "serial" in executor.choices
    ex = make_executor("serial")
    assert type(ex).__name__ == "SerialExecutor"
    assert run(ex, [Job("a", "a", J.rows, 1)])["a"].rows == J.rows(1)


def test_the_built_ins_come_from_pyproject_and_their_absence_is_an_error(monkeypatch, tmp_path):
    from bench import registry
    from bench.errors import BenchError

    assert registry.builtins("executor") == {"inline": "bench.run.executors.inline:InlineExecutor",
                                             "process": "bench.run.executors.process:ProcessExecutor",
                                             "ray": "bench.run.executors.ray:RayExecutor"}
    monkeypatch.setattr(registry, "PYPROJECT", tmp_path / "pyproject.toml")  # an installed wheel: none beside it
    monkeypatch.setattr(registry, "entry_points", lambda group: [])  # and no metadata either
    with pytest.raises(BenchError, match="no built-in executors found"):
        registry.entries("executor")


def _dead_child() -> tuple[int, float]:
    """A child process that has exited and is not reaped yet (a zombie), with its start time."""
    import subprocess
    import time

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = psutil.Process(child.pid).create_time()
    for _ in range(200):
        if psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.01)
    return child, start


def test_a_gone_worker_is_told_from_a_live_one_and_from_a_reused_pid():
    from bench.run.executors.process import _gone
    from bench.run.executors.ray import process_gone

    me = psutil.Process()
    assert not process_gone(me.pid, me.create_time()) and not _gone(me)
    assert process_gone(me.pid, me.create_time() - 5)  # the pid now names another process
    child, start = _dead_child()
    ps = psutil.Process(child.pid)
    assert process_gone(child.pid, start) and _gone(ps)  # a zombie
    child.wait()
    assert process_gone(child.pid, start) and _gone(ps)  # reaped


def test_ray_reports_a_worker_dead_at_its_deadline_as_a_crash_not_a_timeout():
    from bench.run.executors.ray import RayExecutor, _Task

    child, start = _dead_child()
    try:
        dead = _Task(Job("d", "d", J.rows, 1, timeout_s=1.0), submitted=0.0, started=0.0, worker=(child.pid, start))
        me = psutil.Process()
        alive = _Task(Job("a", "a", J.rows, 1, timeout_s=1.0), submitted=0.0, started=0.0, worker=(me.pid, me.create_time()))
        assert not RayExecutor.at_deadline(dead, now=0.5)  # before the deadline: nothing
        assert RayExecutor.at_deadline(dead, now=2.0) and RayExecutor.at_deadline(alive, now=2.0)
        assert RayExecutor._cancel_reason(dead).startswith("worker crashed (its process ended without a result")
        assert RayExecutor._cancel_reason(alive) == "exceeded the cell timeout of 1 s"
    finally:
        child.wait()


def test_process_reports_a_worker_dead_at_its_deadline_as_a_crash_when_its_status_is_slow(monkeypatch):
    """A busy forkserver sends a dead worker's exit status late: past the deadline, the job is still
    a crash (its signal named once the status arrives), never a timeout."""
    import multiprocessing.process as mp
    import time

    real = mp.BaseProcess.exitcode
    hold_until = {}

    def slow_exitcode(self):
        code = real.fget(self)
        if code is None:
            return None
        first = hold_until.setdefault(self.pid, time.monotonic() + 3.0)
        return code if time.monotonic() >= first else None

    monkeypatch.setattr(mp.BaseProcess, "exitcode", property(slow_exitcode))
    with make_executor("process", jobs=1) as ex:
        res = run(ex, [Job("segv", "segfault", J.segfault, 0, timeout_s=1.0)])
    assert res["segv"].error == "worker crashed: killed by signal 11 (SIGSEGV)", res["segv"].error
