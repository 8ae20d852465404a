"""Run every (task, seed, method) cell of a :class:`RunConfig`, resumably, and write the table.

Order: for each task and seed, the reference cell (baselines), then the circuits-methods (learned
masks), then the scores-methods, which are also cut at every size the circuits-methods produced
(matched sizes). Cells of one phase are independent and go to the executor together.

Failures stay inside their cell: a task that cannot be set up, a plugin that fails to import, a
method that raises, returns NaN or wrongly shaped scores, or (under the process and ray executors)
crashes its worker, each become error rows with the reason; every other cell runs and is saved the
moment it finishes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from bench.errors import UsageError, did_you_mean
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
)
from bench.loading import load_world
from bench.progress import progress_bar
from bench.results import ResultsDir, environment_info, to_frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellSpec:
    """Everything a worker needs to compute one cell (picklable)."""

    cfg: RunConfig
    task: str
    seed: int
    method: str
    extra_sizes: tuple[int, ...] = ()


_CACHE: dict = {}


def _world(cfg: RunConfig):
    key = ("world", cfg.preset, cfg.error_policy, cfg.device, cfg.world_dir)
    if key not in _CACHE:
        _CACHE[key] = load_world(cfg.preset, cfg.error_policy, cfg.device, cfg.world_dir)
    return _CACHE[key]


def _setup(cfg: RunConfig, task_name: str, seed: int):
    key = ("setup", cfg.preset, cfg.error_policy, cfg.ablation, cfg.device, cfg.world_dir, cfg.n_train, cfg.n_test,
           cfg.max_rows, task_name, seed)
    if key not in _CACHE:
        # One task setup at a time is kept: setups hold the split's latents.
        for k in [k for k in _CACHE if k[0] == "setup"]:
            del _CACHE[k]
        _CACHE[key] = setup_task(load_task(task_name), _world(cfg), cfg, seed)
    return _CACHE[key]


def compute_cell(spec: CellSpec) -> list[dict]:
    """Rows of one cell (without the common columns). Runs in the driver or in a worker."""
    setup = _setup(spec.cfg, spec.task, spec.seed)
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


def run_benchmark(cfg: RunConfig, out: str | Path, progress: bool = True) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Run (or resume) ``cfg`` into ``out``.

    Returns the table, the failed cells' messages, and those failures that are bad user input
    (a malformed task file): the CLI exits 2 for those, 1 for other failures.
    """
    store = ResultsDir(out)
    t0 = time.perf_counter()
    world = _world(cfg)
    _validate_names(cfg)

    paths: list[Path] = []
    failures: list[str] = []
    input_errors: list[str] = []
    counts = {"run": 0, "kept": 0}
    groups = [(t, s) for t in cfg.tasks for s in cfg.seeds]
    bar = progress_bar(total=len(groups) * (len(cfg.methods) + 1), desc="cells", enabled=progress)
    for task_name, seed in groups:
        try:
            setup = _setup(cfg, task_name, seed)
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken task sinks only its own cells
            log.error("task %s (seed %d) failed to set up: %s", task_name, seed, exc)
            if getattr(exc, "exit_code", 1) == 2:
                input_errors.append(str(exc))
            path = store.cell_path(task_name, "_setup", cell_key(cfg, world, task_name, "?", seed, "_setup"), seed)
            common = common_columns(cfg, world, task_name, "", seed, 0, 0)
            store.write_cell(path, to_frame([dict(common, **r) for r in error_rows("(task setup)", exc)]))
            paths.append(path)
            failures.append(f"{task_name} / seed {seed}: {exc}")
            bar.update(len(cfg.methods) + 1)
            continue
        common = common_columns(cfg, world, setup.name, setup.version, seed, len(setup.train), len(setup.test))
        ref_path = store.cell_path(setup.name, "_reference", cell_key(cfg, world, setup.name, setup.version, seed, "_reference"), seed)
        if not store.has_cell(ref_path):
            store.write_cell(ref_path, to_frame([dict(common, **r) for r in reference_rows(setup)]))
        paths.append(ref_path)
        bar.update(1)

        methods = []
        for name in cfg.methods:
            try:
                methods.append((name, build_method(name, cfg), None))
            except UsageError:
                raise
            except Exception as exc:  # noqa: BLE001 - plugin import failure
                methods.append((name, None, exc))
        first = [m for m in methods if m[1] is not None and m[1].kind == "circuits"]
        rest = [m for m in methods if m not in first]
        extra: list[int] = []
        for phase in (first, rest):
            for name, method, load_error in phase:
                label = method.name if method is not None else name
                mid = method if method is not None else f"unloadable:{name}"
                sizes = extra if (method is not None and method.kind != "circuits") else []
                path = store.cell_path(setup.name, label, cell_key(cfg, world, setup.name, setup.version, seed, mid, sizes), seed)
                paths.append(path)
                if store.has_cell(path) and not _is_error_cell(path):
                    counts["kept"] += 1
                    log.info("%s / seed %d / %s: done earlier, kept", setup.name, seed, label)
                else:
                    if load_error is not None:
                        rows = error_rows(name, load_error)
                    else:
                        log.info("%s / seed %d / %s: running", setup.name, seed, label)
                        try:
                            rows = compute_cell(CellSpec(cfg, task_name, seed, name, tuple(sizes)))
                        except Exception as exc:  # noqa: BLE001 - a failing method never sinks the others
                            log.error("%s / seed %d / %s failed: %s: %s", setup.name, seed, label, type(exc).__name__, exc)
                            rows = error_rows(label, exc)
                    df = to_frame([dict(common, **r) for r in rows])
                    store.write_cell(path, df)
                    counts["run"] += 1
                    if (df["status"] == "error").any():
                        failures.append(f"{setup.name} / seed {seed} / {label}: {df.loc[df['status'] == 'error', 'error'].iloc[0]}")
                if phase is first:
                    extra = sorted(set(extra) | set(_native_sizes(path)))
                bar.update(1)
    bar.close()
    table = store.collect(paths)
    store.write_table(table)
    store.write_run_json({
        "config": asdict(cfg), "world_fingerprint": world.fingerprint, "sae_ids": list(world.sae_ids),
        "world": world.meta.get("world", {}).get("quality_held_out"),
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
