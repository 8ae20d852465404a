"""The figure registry: name -> function(rows, out_dir[, labels]) -> written paths.

A figure that fails is logged and skipped; the others are still drawn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from figures import edges, plots

log = logging.getLogger(__name__)

FIGURES: dict[str, Callable[[pd.DataFrame, Path], list[Path]]] = {
    "faithfulness_vs_size": plots.faithfulness_vs_size,
    "faithfulness_vs_latents": plots.faithfulness_vs_latents,
    "verdict_matched_sizes": plots.verdict_forest,
    "train_vs_test": plots.train_vs_test,
    "completeness_vs_size": plots.completeness_vs_size,
    "knockout_scatter": plots.knockout_scatter,
    "mask_nestedness": plots.mask_nestedness,
    "mask_training": plots.mask_training,
    "cost": plots.cost,
    "case_study": plots.case_study,
    "faithfulness_vs_edges": edges.faithfulness_vs_edges,
    "edge_case_study": edges.edge_case_study,
}

# Drawn only for a run with edge methods (their rows); tests/test_edge_methods.py checks them.
EDGE_FIGURES = ("faithfulness_vs_edges", "edge_case_study")


def render_all(df: pd.DataFrame, out_dir: str | Path, labels: pd.DataFrame | None = None, jobs: int = 1,
               formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Every figure, in ``formats``; ``labels`` (bench.run.labels, when the run wrote them) go to the
    figures that take them.

    ``jobs`` > 1 draws the figures in that many fresh processes (matplotlib draws on one core; a run's
    figures are independent): the same files, byte for byte (``tests/test_figures.py``), in less wall
    time on a machine with the cores. The written paths come back in registry order either way."""
    out_dir = Path(out_dir)
    names = list(FIGURES)
    if jobs <= 1:
        results = [_render_one(name, df, out_dir, labels, formats) for name in names]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a clean interpreter (the driver may hold torch's threads); the costliest figures first
        order = sorted(names, key=lambda n: -COST_RANK.get(n, 0))
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
        try:
            futures = {n: pool.submit(_render_one, n, df, out_dir, labels, formats) for n in order}
            # a worker that died (killed, out of memory) breaks the pool: its figures are drawn here instead
            results = [_result(futures[n], lambda n=n: _render_one(n, df, out_dir, labels, formats)) for n in names]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    written: list[Path] = []
    for name, (paths, error) in zip(names, results):
        if error:
            log.error("figure %s failed: %s", name, error)
        written += paths
    return written


CRASH_ENV = "BENCH_FIGURE_WORKER_CRASH"  # figure names whose worker process dies (a planted failure, for the test)

# Relative drawing time of the figures (a profile of a --quick run): the pool starts the slowest first.
COST_RANK = {"faithfulness_vs_size": 9, "case_study": 8, "mask_training": 7, "completeness_vs_size": 6,
             "faithfulness_vs_latents": 5}


def _render_one(name: str, df: pd.DataFrame, out_dir: Path, labels, formats) -> tuple[list[Path], str | None]:
    """One figure: its written paths, or the one-line reason it failed (never an exception: one broken
    figure never blocks the rest)."""
    import inspect
    import multiprocessing
    import os

    from figures import style

    if multiprocessing.parent_process() is not None and name in os.environ.get(CRASH_ENV, "").split(","):
        os._exit(1)  # the test's planted worker death (tests/test_figures.py)
    fn = FIGURES[name]
    before = style.FORMATS
    style.FORMATS = tuple(formats)
    try:
        extra = {"labels": labels} if "labels" in inspect.signature(fn).parameters else {}
        return fn(df, out_dir, **extra), None
    except Exception as exc:  # noqa: BLE001
        return [], f"{type(exc).__name__}: {exc}"
    finally:
        style.FORMATS = before


def _result(future, redraw) -> tuple[list[Path], str | None]:
    from concurrent.futures.process import BrokenProcessPool

    try:
        return future.result()
    except BrokenProcessPool:
        return redraw()
    except Exception as exc:  # noqa: BLE001 - anything else takes only its figure
        return [], f"{type(exc).__name__}: {exc}"
