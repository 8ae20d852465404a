"""Run every (task, seed, method) cell of a :class:`RunConfig`, resumably, and write the table.

Order: phase A computes every (task, seed)'s reference cell (baselines) and circuits-method cells
(learned masks); phase B the scores-methods, which are also cut at every size a circuits-method
produced on the same task and seed (matched sizes). The cells of a phase are independent and go to
the executor together (inline, fresh processes, or Ray tasks: :mod:`bench.executors`); the driver
writes each cell the moment its result arrives.

Failures stay inside their cell: a task that cannot be set up, a plugin that fails to import, a
method that raises, returns NaN or wrongly shaped scores, or (under the process and ray executors)
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

from bench.costs import FRESH_WORKER_ENV
from bench.errors import UsageError, did_you_mean
from bench.executors import Job, make_executor
from bench.harness import (
    RunConfig,
    build_method,
    cell_key,
    common_columns,
    error_rows,
    load_task,
    reference_rows,
    run_cell,
    setup_task,
    task_splits,
)
from bench.loading import load_world
from bench.locking import lock_directory
from bench.progress import progress_bar
from bench.results import ResultsDir, environment_info, to_frame

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
_MAX_SETUPS = 16  # task setups kept per process (the default run has 12 task x seed groups)


def world_for(cfg: RunConfig):
    """The run's world (preset, error policy, device, world directory, SAE sites), cached per process."""
    return _world(cfg)


def _world(cfg: RunConfig):
    key = ("world", cfg.preset, cfg.error_policy, cfg.device, cfg.world_dir, cfg.sites)
    if key not in _CACHE:
        world = load_world(cfg.preset, cfg.error_policy, cfg.device, cfg.world_dir)
        if cfg.sites:
            known = world.spliced.sites
            for s in cfg.sites:
                if s not in known:
                    raise UsageError(did_you_mean(s, known, "SAE site"))
            world = dataclasses.replace(world, spliced=world.spliced.with_sites(cfg.sites))
        _CACHE[key] = world
    return _CACHE[key]


def _setup(cfg: RunConfig, task_name: str, seed: int):
    key = ("setup", cfg.preset, cfg.error_policy, cfg.ablation, cfg.device, cfg.world_dir, cfg.train_size(task_name), cfg.n_test,
           cfg.max_rows, cfg.sites, cfg.answers, task_name, seed)
    if key not in _CACHE:
        setups = [k for k in _CACHE if k[0] == "setup"]
        for k in setups[: max(0, len(setups) - _MAX_SETUPS + 1)]:
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
    return run_cell(setup, method, spec.cfg, list(spec.extra_sizes))


def _validate_names(cfg: RunConfig) -> None:
    from bench import registry

    for name in cfg.methods:
        if ":" not in name and name not in registry.entries("method"):
            raise UsageError(did_you_mean(name, registry.entries("method"), "method"))
    for name in cfg.tasks:
        if not name.endswith((".json", ".jsonl")) and ":" not in name and name not in registry.entries("task"):
            raise UsageError(did_you_mean(name, registry.entries("task"), "task"))


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


def run_benchmark(cfg: RunConfig, out: str | Path, progress: bool = True, executor: str = "inline", jobs: int = 1,
                  ray_address: str | None = None, cell_timeout: float | None = None,
                  cell_max_memory_mb: float | None = None) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Run (or resume) ``cfg`` into ``out`` with the named executor (see :mod:`bench.executors`).

    Returns the table, the failed cells' messages, and those failures that are bad user input
    (a malformed task file): the CLI exits 2 for those, 1 for other failures.
    """
    store = ResultsDir(out)
    ex = make_executor(executor, jobs, ray_address)
    with lock_directory(store.path), ex:
        return _run(cfg, store, progress, ex, cell_timeout, cell_max_memory_mb)


def _run(cfg, store: ResultsDir, progress: bool, ex, cell_timeout, cell_max_memory_mb):
    t0 = time.perf_counter()
    world = _world(cfg)
    _validate_names(cfg)
    fresh = ex.name != "inline"
    paths: list[Path] = []
    failures: list[str] = []
    input_errors: list[str] = []
    counts = {"run": 0, "kept": 0}

    methods = []
    for name in cfg.methods:
        try:
            methods.append((name, build_method(name, cfg), None))
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - plugin import failure: error cells, the rest runs
            methods.append((name, None, exc))
    first = [m for m in methods if m[1] is not None and m[1].kind == "circuits"]
    rest = [m for m in methods if m not in first]

    groups = []  # (task name, seed, common columns)
    for task_name in cfg.tasks:
        for seed in cfg.seeds:
            try:
                name, version, n_tr, n_te = _check_task(task_name, world, cfg, seed)
            except UsageError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broken task sinks only its own cells
                log.error("task %s (seed %d) cannot be used: %s", task_name, seed, exc)
                if getattr(exc, "exit_code", 1) == 2:
                    input_errors.append(str(exc))
                path = store.cell_path(task_name, "_setup", cell_key(cfg, world, task_name, "?", seed, "_setup"), seed)
                common = common_columns(cfg, world, task_name, "", seed, 0, 0)
                store.write_cell(path, to_frame([dict(common, **r) for r in error_rows("(task setup)", exc)]))
                paths.append(path)
                failures.append(f"{task_name} / seed {seed}: {exc}")
                continue
            groups.append((task_name, seed, name, version, common_columns(cfg, world, name, version, seed, n_tr, n_te)))

    bar = progress_bar(total=len(groups) * (len(methods) + 1), desc="cells", enabled=progress)

    def cell(task_name, seed, name, version, common, method_name, method, sizes) -> _Cell:
        label = method.name if method is not None else method_name
        mid = method if method is not None else (REFERENCE_CELL if method_name == REFERENCE_CELL else f"unloadable:{method_name}")
        path = store.cell_path(name, label, cell_key(cfg, world, name, version, seed, mid, sizes), seed)
        spec = CellSpec(cfg, task_name, seed, method_name, tuple(sizes), fresh)
        return _Cell(spec, f"{name} / seed {seed} / {label}", path, common)

    def submit(cells: list[tuple[_Cell, Exception | None]]) -> None:
        todo = []
        for c, load_error in cells:
            paths.append(c.path)
            if store.has_cell(c.path) and not _is_error_cell(c.path):
                counts["kept"] += 1
                bar.update(1)
                log.info("%s: done earlier, kept", c.label)
            elif load_error is not None:
                finish(c, error_rows(c.spec.method, load_error), None)
            else:
                todo.append(c)
        by_key = {c.path.name: c for c in todo}
        jobs = [Job(c.path.name, c.label, compute_cell, c.spec, cell_timeout, cell_max_memory_mb,
                    num_gpus=1 if str(cfg.device).startswith("cuda") and ex.name == "ray" else 0) for c in todo]
        ex.run(jobs, lambda job, res: finish(by_key[job.key], res.rows if res.ok else error_rows(
            by_key[job.key].label.split(" / ")[-1], res.error), res))

    def finish(c: _Cell, rows: list[dict], res) -> None:
        if res is not None and res.ok:
            rows = rows + [{"method": rows[0].get("method", c.spec.method) if rows else c.spec.method, "metric": m,
                            "value": float(v), "text": res.memory_measure if m == "cell_peak_memory_mb" else ""}
                           for m, v in (("cell_wall_seconds", res.wall_seconds), ("cell_peak_memory_mb", res.peak_memory_mb))]
        elif res is not None:
            log.error("%s failed: %s", c.label, res.error)
        df = to_frame([dict(c.common, **r) for r in rows])
        store.write_cell(c.path, df)
        counts["run"] += 1
        if (df["status"] == "error").any():
            failures.append(f"{c.label}: {df.loc[df['status'] == 'error', 'error'].iloc[0]}")
        bar.update(1)

    # Phase A: baselines and circuits-methods; phase B: rankings, also cut at phase A's sizes.
    submit([(cell(*g, REFERENCE_CELL, None, []), None) for g in groups]
           + [(cell(*g, name, m, []), err) for g in groups for name, m, err in first])
    phase_b = []
    for g in groups:
        extra = sorted({k for name, m, _ in first for k in _native_sizes(cell(*g, name, m, []).path)})
        phase_b += [(cell(*g, name, m, extra if m is not None else []), err) for name, m, err in rest]
    submit(phase_b)
    bar.close()

    table = store.collect(paths)
    store.write_table(table)
    try:  # latent labels for the case-study figures; a failure here costs only the labels
        from bench.labels import write_labels

        write_labels(world, store.path, cfg)
    except Exception as exc:  # noqa: BLE001
        log.error("latent labels could not be computed: %s: %s", type(exc).__name__, exc)
    store.write_run_json({
        "config": asdict(cfg), "world_fingerprint": world.fingerprint, "sae_ids": list(world.sae_ids),
        # a variant's own measured quality (variants.json), else the world's (world.json)
        "world": (world.meta.get("variant") or world.meta.get("world", {})).get("quality_held_out"), "executor": ex.name,
        "cells": {"run": counts["run"], "kept_from_earlier": counts["kept"], "failed": len(failures)},
        "failures": failures, "seconds": time.perf_counter() - t0, **environment_info(),
    })
    return table, failures, input_errors


def _native_sizes(path: Path) -> list[int]:
    """Sizes of the native circuits stored in a finished circuits-method cell (none if it failed)."""
    if not path.is_file():
        return []
    df = pd.read_parquet(path, columns=["metric", "circuit_kind", "value", "status"])
    d = df[(df.metric == "size_nodes") & (df.circuit_kind == "native") & (df.status == "ok")]
    return sorted({int(v) for v in d.value})


def _is_error_cell(path: Path) -> bool:
    """Error cells are retried on resume (the cause may be fixed); finished cells are kept."""
    df = pd.read_parquet(path, columns=["status"])  # checksum already verified by has_cell
    return bool((df["status"] == "error").any())
