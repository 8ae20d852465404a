"""Run every (task, seed, method) cell of a :class:`RunConfig`, resumably, and write the table.

Order: phase A computes every (task, seed)'s reference cell (baselines) and circuits-method cells
(learned masks); phase B the scores-methods, which are also cut at every size a circuits-method
produced on the same task and seed (matched sizes). The cells of a phase are independent and go to
the executor together (inline, fresh processes, or Ray tasks: :mod:`bench.run.executors`); the driver
writes each cell the moment its result arrives.

Failures stay inside their cell: a task that cannot be set up, a registered plugin that fails to
import, a method that raises, returns NaN or wrongly shaped scores, or (under the process and ray executors)
crashes its worker, each become error rows with the reason; every other cell runs and is saved the
moment it finishes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from bench.errors import UsageError, did_you_mean
from bench.model.loading import load_world
from bench.model.presets import get_preset
from bench.progress import progress_bar
from bench.run.cell import run_cell
from bench.run.config import MAX_SETUPS, RunConfig
from bench.run.costs import FRESH_WORKER_ENV
from bench.run.executors import make_executor
from bench.run.executors.base import Job
from bench.run.keys import cell_key
from bench.run.locking import lock_directory
from bench.run.results import ResultsDir, environment_info, to_frame
from bench.run.rows import common_columns, error_rows, reference_rows
from bench.run.setup import build_method, load_task, preflight, setup_task, task_splits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellSpec:
    """Everything a worker needs to compute one cell (picklable). ``method`` may be REFERENCE_CELL."""

    cfg: RunConfig
    task: str
    seed: int
    method: str
    extra_sizes: tuple[int, ...] = ()
    fresh_worker: bool = False


REFERENCE_CELL = "_reference"
_CACHE: dict = {}


def world_for(cfg: RunConfig):
    """The run's world (preset, error policy, device, world directory, SAE sites), cached per process."""
    return _world(cfg)


def _world_key(cfg: RunConfig) -> tuple:
    return ("world", cfg.preset, cfg.error_policy, cfg.device, cfg.world_dir, cfg.sites, cfg.dtype)


def use_world(cfg: RunConfig, world) -> None:
    """Serve ``world`` (a model and SAEs in memory) for ``cfg``'s cells in this process, its SAE sites
    applied as for a loaded preset."""
    for key in [k for k in _CACHE if k[0] == "setup"]:
        del _CACHE[key]  # setups of another world with the same settings must not be reused
    _CACHE[_world_key(cfg)] = _with_sites(world, cfg)


def _with_sites(world, cfg: RunConfig):
    """``world`` with only ``cfg.sites`` spliced (all of them when none are named)."""
    if not cfg.sites:
        return world
    known = world.spliced.sites
    for s in cfg.sites:
        if s not in known:
            raise UsageError(did_you_mean(s, known, "SAE site"))
    return dataclasses.replace(world, spliced=world.spliced.with_sites(cfg.sites))


def drop_world(cfg: RunConfig) -> None:
    """Forget a world served by :func:`use_world` and its setups (the model is the caller's again)."""
    _CACHE.pop(_world_key(cfg), None)
    for key in [k for k in _CACHE if k[0] == "setup" and k[1] == cfg.preset]:
        del _CACHE[key]


def _world(cfg: RunConfig):
    key = _world_key(cfg)
    if key not in _CACHE:
        preset = get_preset(cfg.preset).with_dtype(cfg.dtype, cfg.device)
        _CACHE[key] = _with_sites(load_world(preset, cfg.error_policy, cfg.device, cfg.world_dir), cfg)
    return _CACHE[key]


def _setup(cfg: RunConfig, task_name: str, seed: int):
    key = ("setup", cfg.preset, cfg.dtype, cfg.error_policy, cfg.ablation, cfg.device, cfg.world_dir, cfg.train_size(task_name), cfg.n_test,
           cfg.max_rows, cfg.sites, cfg.answers, task_name, seed)
    if key not in _CACHE:
        setups = [k for k in _CACHE if k[0] == "setup"]
        for k in setups[: max(0, len(setups) - MAX_SETUPS + 1)]:
            del _CACHE[k]
        _CACHE[key] = setup_task(load_task(task_name), _world(cfg), cfg, seed)
    return _CACHE[key]


def compute_cell(spec: CellSpec) -> list[dict]:
    """Rows of one cell (without the common columns). Runs in the driver or in a worker."""
    if spec.fresh_worker:
        os.environ[FRESH_WORKER_ENV] = "1"
    setup = _setup(spec.cfg, spec.task, spec.seed)
    if spec.method == REFERENCE_CELL:
        return reference_rows(setup)
    method = build_method(spec.method, spec.cfg)
    if method.unit == "edges":
        from bench.run.edge_cell import run_edge_cell

        return run_edge_cell(setup, method, spec.cfg, list(spec.extra_sizes))
    return run_cell(setup, method, spec.cfg, list(spec.extra_sizes))


def _check_task(task_name: str, world, cfg: RunConfig, seed: int) -> tuple[str, int, int]:
    """Records, tokens and split of one task and seed, in the driver (cheap): bad task input is
    reported once, before any worker starts. Returns (name, version, n_train, n_test)."""
    task = load_task(task_name)
    train, test = task_splits(task, world, cfg, seed)
    return task.name, task.version, len(train), len(test)


@dataclass
class _Cell:
    spec: CellSpec
    label: str
    path: Path
    common: dict


@dataclass(frozen=True)
class _Group:
    """One task and seed whose records loaded: every cell of it shares these columns."""

    task: str  # as given (a name or a task file)
    seed: int
    name: str  # the task's own name
    version: str
    common: dict


@dataclass(frozen=True)
class _MethodSlot:
    """A method named in the run: built, or the reason it could not be (its cells become errors)."""

    name: str
    method: object | None
    load_error: Exception | None


def run_benchmark(cfg: RunConfig, out: str | Path, progress: bool = True, executor: str = "inline", jobs: int = 1,
                  ray_address: str | None = None, cell_timeout: float | None = None,
                  cell_max_memory_mb: float | None = None, world=None) -> tuple[pd.DataFrame, list[str]]:
    """Run (or resume) ``cfg`` into ``out`` with the named executor (see :mod:`bench.run.executors`).

    ``world``: a :class:`bench.model.loading.World` already in memory (a model and SAEs handed to
    :func:`bench.evaluate`) instead of loading ``cfg.preset``; it runs inline only.

    Returns the table and the failed cells' messages. Bad user input (an unknown name, a method
    target that cannot be imported, a bad option, a task file that cannot be read or tokenized, a
    device this torch lacks) raises a one-line :class:`bench.errors.BenchError` before any cell runs.
    """
    if world is not None:
        if executor != "inline":
            raise UsageError(f"executor {executor!r}: a world in memory runs inline (workers cannot receive it)")
        use_world(cfg, world)
    store = ResultsDir(out)
    ex = make_executor(executor, jobs, ray_address)
    with lock_directory(store.path), ex:
        return _Run(cfg, store, ex, progress, cell_timeout, cell_max_memory_mb).execute()


class _Run:
    """One run, as named phases: load the methods, check the tasks, phase A (reference and
    circuits-method cells), phase B (rankings, also cut at phase A's sizes), then the table, the
    labels and run.json. What the run accumulates (cell paths, failures, counts) lives here."""

    def __init__(self, cfg: RunConfig, store: ResultsDir, ex, progress: bool, cell_timeout, cell_max_memory_mb):
        self.cfg, self.store, self.ex = cfg, store, ex
        self.progress, self.cell_timeout, self.cell_max_memory_mb = progress, cell_timeout, cell_max_memory_mb
        self.paths: list[Path] = []
        self.failures: list[str] = []
        self.counts = {"run": 0, "kept": 0}
        self.bar = None

    def execute(self) -> tuple[pd.DataFrame, list[str]]:
        t0 = time.perf_counter()
        preflight(self.cfg)  # what the user typed, before the world loads
        log.info("loading preset %s on %s", self.cfg.preset, self.cfg.device)
        self.world = _world(self.cfg)
        slots = self.load_methods()
        first = [s for s in slots if s.method is not None and s.method.kind == "circuits"]
        rest = [s for s in slots if s not in first]
        groups = self.check_tasks()
        self.bar = progress_bar(total=len(groups) * (len(slots) + 1), desc="cells", enabled=self.progress)
        log.info("phase A: %d reference and circuits-method cells (%d task x seed groups)", len(groups) * (1 + len(first)),
                 len(groups))
        self.phase_a(groups, first)
        log.info("phase B: %d ranking cells, cut at phase A's sizes too", len(groups) * len(rest))
        self.phase_b(groups, first, rest)
        self.bar.close()
        table = self.store.collect(self.paths)
        self.store.write_table(table)
        log.info("table written (%d rows); latent labels next", len(table))
        self.write_labels()
        self.write_run_json(time.perf_counter() - t0)
        return table, self.failures

    # ----- before any cell ------------------------------------------------------------------------

    def load_methods(self) -> list[_MethodSlot]:
        """Every method built once in the driver; a plugin that fails to import fails only its cells."""
        slots = []
        for name in self.cfg.methods:
            try:
                slots.append(_MethodSlot(name, build_method(name, self.cfg), None))
            except UsageError:
                raise
            except Exception as exc:  # noqa: BLE001 - plugin import failure: error cells, the rest runs
                slots.append(_MethodSlot(name, None, exc))
        return slots

    def check_tasks(self) -> list[_Group]:
        """Every task and seed's records, tokens and split, in the driver; a broken task sinks only
        its own cells (one error cell, written now)."""
        cfg, world, store = self.cfg, self.world, self.store
        groups = []
        for task_name in cfg.tasks:
            for seed in cfg.seeds:
                try:
                    name, version, n_tr, n_te = _check_task(task_name, world, cfg, seed)
                except UsageError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a broken task sinks only its own cells
                    if getattr(exc, "exit_code", 1) == 2:
                        raise  # bad input (a task file the tokenizer cannot use): one line, before any cell
                    log.error("task %s (seed %d) cannot be used: %s", task_name, seed, exc)
                    path = store.cell_path(task_name, "_setup", cell_key(cfg, world, task_name, "?", seed, "_setup"), seed)
                    common = common_columns(cfg, world, task_name, "", seed, 0, 0)
                    store.write_cell(path, to_frame([dict(common, **r) for r in error_rows("(task setup)", exc)]))
                    self.paths.append(path)
                    self.failures.append(f"{task_name} / seed {seed}: {exc}")
                    continue
                groups.append(_Group(task_name, seed, name, version, common_columns(cfg, world, name, version, seed, n_tr, n_te)))
        return groups

    # ----- the two phases -------------------------------------------------------------------------

    def phase_a(self, groups: list[_Group], first: list[_MethodSlot]) -> None:
        """Every task and seed's reference cell (baselines) and circuits-method cells (the mask)."""
        self.submit([(self.cell(g, REFERENCE_CELL, None, []), None) for g in groups]
                    + [(self.cell(g, s.name, s.method, []), s.load_error) for g in groups for s in first])

    def phase_b(self, groups: list[_Group], first: list[_MethodSlot], rest: list[_MethodSlot]) -> None:
        """The ranking methods, also cut at every size phase A's circuits-methods produced on the same
        task and seed (matched sizes)."""
        cells = []
        for g in groups:
            extra = {unit: sorted({k for s in first if s.method.unit == unit
                                   for k in _native_sizes(self.cell(g, s.name, s.method, []).path, unit)})
                     for unit in ("nodes", "edges")}
            cells += [(self.cell(g, s.name, s.method, extra[s.method.unit] if s.method is not None else []), s.load_error)
                      for s in rest]
        self.submit(cells)

    # ----- cells ------------------------------------------------------------------------------------

    def cell(self, g: _Group, method_name: str, method, sizes: list[int]) -> _Cell:
        label = method.name if method is not None else method_name
        mid = method if method is not None else (REFERENCE_CELL if method_name == REFERENCE_CELL else f"unloadable:{method_name}")
        path = self.store.cell_path(g.name, label, cell_key(self.cfg, self.world, g.name, g.version, g.seed, mid, sizes), g.seed)
        spec = CellSpec(self.cfg, g.task, g.seed, method_name, tuple(sizes), self.ex.fresh_process_per_job)
        return _Cell(spec, f"{g.name} / seed {g.seed} / {label}", path, g.common)

    def submit(self, cells: list[tuple[_Cell, Exception | None]]) -> None:
        """Keep the cells finished earlier, record the unloadable ones, run the rest on the executor."""
        todo = []
        for c, load_error in cells:
            self.paths.append(c.path)
            if self.store.has_cell(c.path) and not _is_error_cell(c.path):
                self.counts["kept"] += 1
                self.bar.update(1)
                log.info("%s: done earlier, kept", c.label)
            elif load_error is not None:
                self.record(c, error_rows(c.spec.method, load_error), None)
            else:
                todo.append(c)
        by_key = {c.path.name: c for c in todo}
        gpus = 1 if str(self.cfg.device).startswith("cuda") and self.ex.schedules_gpus else 0
        jobs = [Job(c.path.name, c.label, compute_cell, c.spec, self.cell_timeout, self.cell_max_memory_mb, num_gpus=gpus)
                for c in todo]

        def on_result(job: Job, res) -> None:
            c = by_key[job.key]
            self.record(c, res.rows if res.ok else error_rows(c.label.split(" / ")[-1], res.error), res)

        self.ex.run(jobs, on_result)

    def record(self, c: _Cell, rows: list[dict], res) -> None:
        """Write one finished cell (with its wall time and memory), the moment it arrives."""
        if res is not None and res.ok:
            rows = rows + [{"method": rows[0].get("method", c.spec.method) if rows else c.spec.method, "metric": m,
                            "value": float(v), "text": res.memory_measure if m == "cell_peak_memory_mb" else ""}
                           for m, v in (("cell_wall_seconds", res.wall_seconds), ("cell_peak_memory_mb", res.peak_memory_mb))]
        elif res is not None:
            log.error("%s failed: %s", c.label, res.error)
        df = to_frame([dict(c.common, **r) for r in rows])
        self.store.write_cell(c.path, df)
        self.counts["run"] += 1
        if (df["status"] == "error").any():
            self.failures.append(f"{c.label}: {df.loc[df['status'] == 'error', 'error'].iloc[0]}")
        self.bar.update(1)

    # ----- after every cell -----------------------------------------------------------------------

    def write_labels(self) -> None:
        """Latent labels for the case-study figures; a failure here costs only the labels."""
        try:
            from bench.run.labels import write_labels

            write_labels(self.world, self.store.path, self.cfg)
        except Exception as exc:  # noqa: BLE001
            log.error("latent labels could not be computed: %s: %s", type(exc).__name__, exc)

    def write_run_json(self, seconds: float) -> None:
        world = self.world
        self.store.write_run_json({
            "config": asdict(self.cfg), "world_fingerprint": world.fingerprint, "sae_ids": list(world.sae_ids),
            # a variant's own measured quality (variants.json), else the world's (world.json)
            "world": (world.meta.get("variant") or world.meta.get("world", {})).get("quality_held_out"),
            "executor": self.ex.name, "dtype": world.preset.dtype,
            "cells": {"run": self.counts["run"], "kept_from_earlier": self.counts["kept"], "failed": len(self.failures)},
            "failures": self.failures, "seconds": seconds, **environment_info(),
        })


def _native_sizes(path: Path, unit: str = "nodes") -> list[int]:
    """Sizes (in ``unit``: nodes or edges) of the native circuits stored in a finished circuits-method
    cell (none if it failed)."""
    if not path.is_file():
        return []
    df = pd.read_parquet(path, columns=["metric", "circuit_kind", "value", "status"])
    d = df[(df.metric == f"size_{unit}") & (df.circuit_kind == "native") & (df.status == "ok")]
    return sorted({int(v) for v in d.value})


def _is_error_cell(path: Path) -> bool:
    """Error cells are retried on resume (the cause may be fixed); finished cells are kept."""
    df = pd.read_parquet(path, columns=["status"])  # checksum already verified by has_cell
    return bool((df["status"] == "error").any())
