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


def render_all(df: pd.DataFrame, out_dir: str | Path, labels: pd.DataFrame | None = None) -> list[Path]:
    """Every figure; ``labels`` (bench.run.labels, when the run wrote them) go to the figures that take them."""
    import inspect

    out_dir = Path(out_dir)
    written: list[Path] = []
    for name, fn in FIGURES.items():
        try:
            extra = {"labels": labels} if "labels" in inspect.signature(fn).parameters else {}
            written += fn(df, out_dir, **extra)
        except Exception as exc:  # noqa: BLE001 - one broken figure never blocks the rest
            log.error("figure %s failed: %s: %s", name, type(exc).__name__, exc)
    return written
