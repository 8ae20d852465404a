"""A results directory's figures and report (``report.md``, and ``report.html`` with the figures
embedded), drawn from its stored rows (no model run)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("bench")


def render_run(results: Path, fig_dir: Path, jobs: int | None = None, formats: tuple[str, ...] = ("png", "pdf")) -> None:
    """Every figure and the report of a results directory, from its stored rows and labels; figures
    drawn in ``jobs`` processes (default: one per core, at most 4) in ``formats``."""
    from bench.report.write import write_report
    from bench.run.labels import load_labels
    from bench.run.results import load_results
    from figures import render_all

    df = load_results(results)
    labels = load_labels(results)
    if labels is None:
        log.warning("%s: no latent labels, so the case-study figures name latents by index only; "
                    "'python -m bench labels --results %s' computes them and redraws", results, results)
    if jobs is None:
        jobs = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    written = render_all(df, fig_dir, labels, jobs=jobs, formats=formats)
    report = write_report(df, results, fig_dir)
    page = write_page(results)
    log.info("figures: %d files in %s; report: %s%s", len(written), fig_dir, report,
             f" (and {page.name}, figures embedded)" if page else "")


def write_page(results: Path) -> Path | None:
    """``report.html`` beside ``report.md``; a missing ``markdown`` package costs only the page."""
    try:
        from bench.report.html import write_html

        return write_html(results)
    except ImportError as exc:
        log.error("report.html not written: %s (pip install markdown)", exc)
        return None
