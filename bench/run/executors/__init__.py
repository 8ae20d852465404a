"""Executors: how a run's independent cells are run (inline, fresh processes, Ray tasks, or a
plugin's own). Each is a :class:`bench.run.executors.base.Executor` subclass registered under the
entry-point group ``sae_circuit_bench.executors``, like methods and tasks; :func:`make_executor`
builds one by name and ``--executor`` offers every registered name."""

from __future__ import annotations

import os

from bench import registry
from bench.errors import UsageError, did_you_mean
from bench.run.executors.base import Executor


def executor_names() -> tuple[str, ...]:
    """Every registered executor (built-ins first), without importing any of them."""
    return tuple(registry.entries("executor"))


def make_executor(name: str, jobs: int = 1, ray_address: str | None = None) -> Executor:
    """``jobs``: jobs at once (``process``: workers; ``ray``: CPUs of the local Ray instance); 0 means
    one per CPU. ``ray_address``: a cluster to join, for executors that accept one (``ray``: ``None``
    starts a local instance for the executor's lifetime; ``"auto"`` or an address joins an existing
    cluster, never shut down by us)."""
    known = executor_names()
    if name not in known:
        raise UsageError(did_you_mean(name, known, "executor"))
    if jobs is None or jobs == 0:
        jobs = os.cpu_count() or 1
    if jobs < 0:
        raise UsageError(f"--jobs must be 0 (one per CPU) or a positive number of workers, not {jobs}")
    try:
        cls = registry.load("executor", name)
    except registry.PluginLoadError as exc:
        raise UsageError(str(exc)) from None
    if not (isinstance(cls, type) and issubclass(cls, Executor)):
        raise UsageError(f"executor {name!r} is not a bench Executor subclass")
    if cls.name != name:
        raise UsageError(f"executor {name!r} is registered as {name!r} but its class says name = {cls.name!r}")
    if ray_address is not None and not cls.accepts_address:
        raise UsageError(f"--ray-address applies only to an executor that joins a cluster (ray), not {name!r}")
    return cls(jobs=jobs, address=ray_address)
