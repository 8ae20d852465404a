"""Run every (task, method) cell of a :class:`RunConfig`, resumably, and write the table.

Failures stay inside their cell: a task that cannot be set up, a plugin that fails to import, a
method that raises or returns NaN or wrongly shaped scores each become error rows with the reason;
every other cell runs and is saved.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
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


def run_benchmark(cfg: RunConfig, out: str | Path, progress: bool = True) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Run (or resume) ``cfg`` into ``out``.

    Returns the table, the failed cells' messages, and those failures that are bad user input
    (a malformed task file): the CLI exits 2 for those, 1 for other failures.
    """
    store = ResultsDir(out)
    t0 = time.perf_counter()
    world = load_world(cfg.preset, cfg.error_policy, cfg.device, cfg.world_dir)
    # Resolve every name up front: a typo is a usage error before any work starts.
    from bench import registry

    for name in cfg.methods:
        if ":" not in name and name not in registry.entries("method"):
            raise UsageError(did_you_mean(name, registry.entries("method"), "method"))
    for name in cfg.tasks:
        if not name.endswith((".json", ".jsonl")) and ":" not in name and name not in registry.entries("task"):
            raise UsageError(did_you_mean(name, registry.entries("task"), "task"))

    paths: list[Path] = []
    failures: list[str] = []
    input_errors: list[str] = []
    done = skipped = 0
    for task_name in progress_bar(cfg.tasks, desc="tasks", enabled=progress):
        try:
            task = load_task(task_name, cfg)
            setup = setup_task(task, world, cfg)
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken task sinks only its own cells
            log.error("task %s failed to set up: %s", task_name, exc)
            if getattr(exc, "exit_code", 1) == 2:
                input_errors.append(str(exc))
            path = store.cell_path(task_name, "_setup", cell_key(cfg, world, task_name, "?", "_setup"))
            common = common_columns(cfg, world, task_name, "", 0, 0)
            df = to_frame([dict(common, **r) for r in error_rows("(task setup)", exc)])
            store.write_cell(path, df)
            paths.append(path)
            failures.append(f"{task_name}: {exc}")
            continue
        common = common_columns(cfg, world, setup.name, setup.version, len(setup.train), len(setup.test))
        ref_path = store.cell_path(setup.name, "_reference", cell_key(cfg, world, setup.name, setup.version, "_reference"))
        if not store.has_cell(ref_path):
            store.write_cell(ref_path, to_frame([dict(common, **r) for r in reference_rows(setup)]))
        paths.append(ref_path)
        for method_name in cfg.methods:
            load_error: Exception | None = None
            try:
                method = build_method(method_name, cfg)
                key = cell_key(cfg, world, setup.name, setup.version, method)
                label = method.name
            except UsageError:
                raise
            except Exception as exc:  # noqa: BLE001 - plugin import failure
                method, label, load_error = None, method_name, exc
                key = cell_key(cfg, world, setup.name, setup.version, f"unloadable:{method_name}")
            path = store.cell_path(setup.name, label, key)
            paths.append(path)
            if store.has_cell(path) and not _is_error_cell(path):
                skipped += 1
                log.info("%s / %s: done earlier, kept", setup.name, label)
                continue
            if method is None:
                rows = error_rows(method_name, load_error)
            else:
                log.info("%s / %s: running", setup.name, label)
                try:
                    rows = run_cell(setup, method, cfg, world)
                except Exception as exc:  # noqa: BLE001 - a failing method never sinks the others
                    log.error("%s / %s failed: %s: %s", setup.name, label, type(exc).__name__, exc)
                    rows = error_rows(label, exc)
            df = to_frame([dict(common, **r) for r in rows])
            store.write_cell(path, df)
            done += 1
            if (df["status"] == "error").any():
                failures.append(f"{setup.name} / {label}: {df.loc[df['status'] == 'error', 'error'].iloc[0]}")
    table = store.collect(paths)
    store.write_table(table)
    store.write_run_json({
        "config": asdict(cfg), "world_fingerprint": world.fingerprint, "sae_ids": list(world.sae_ids),
        "world": world.meta.get("world", {}).get("quality_held_out"),
        "cells": {"run": done, "kept_from_earlier": skipped, "failed": len(failures)},
        "failures": failures, "seconds": time.perf_counter() - t0, **environment_info(),
    })
    return table, failures, input_errors


def _is_error_cell(path: Path) -> bool:
    """Error cells are retried on resume (the cause may be fixed); finished cells are kept."""
    df = pd.read_parquet(path, columns=["status"])  # checksum already verified by has_cell
    return bool((df["status"] == "error").any())
