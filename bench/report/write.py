"""The Markdown report of a run, made from stored rows only (through :mod:`bench.eval.verdict`).

Sections (:data:`bench.report.sections.SECTIONS`): setting; the headline (F at matched sizes with
95% intervals, and the paired verdict); each method's share of the greedy reference's F; controls;
nodes needed for F ≥ 0.8 / 0.9 (interpolated); area against random; train vs test; completeness
and knockout; stability and nestedness; the studied circuits per SAE; cost; failed cells; figures.
Every table is also written as CSV next to the report (``summary_<table>.csv``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.eval import verdict
from bench.report import controls as control_report
from bench.report.sections import SECTIONS, ReportContext
from bench.run.results import read_run_json

SUMMARY_TABLES = ("matched", "pairwise", "reference_share", "settings", "levels", "area", "train_test", "knockout", "stability",
                  "nestedness", "sites", "controls", "control_signal", "edge_universe", "edge_matched", "edge_pairwise",
                  "edge_train_test")


def summary(df: pd.DataFrame, n_boot: int = 2000) -> dict[str, pd.DataFrame]:
    """Every report table (see :func:`bench.eval.verdict.build`)."""
    return verdict.build(df, n_boot)


def report_context(df: pd.DataFrame, results: Path, fig_dir: Path, n_boot: int = 2000) -> ReportContext:
    """The tables, settings and controls every section reads."""
    results = Path(results)
    t = summary(df, n_boot)
    controls, control_notes = control_report.load_controls(results, n_boot, df)
    ctrl_cmp, ctrl_sig = control_report.compare(t, controls) if controls else (pd.DataFrame(), pd.DataFrame())
    t["controls"], t["control_signal"] = ctrl_cmp, ctrl_sig
    cfg = read_run_json(results).get("config", {})
    seeds = cfg.get("seeds", sorted(df.seed.unique().tolist()))
    return ReportContext(df, t, cfg, seeds, results, Path(fig_dir), controls, control_notes, ctrl_cmp, ctrl_sig,
                         control_report.flags_for_pairwise(ctrl_cmp))


def write_report(df: pd.DataFrame, results: Path, fig_dir: Path, n_boot: int = 2000) -> Path:
    """``results/report.md`` (every section in order) and ``results/summary_*.csv``."""
    c = report_context(df, results, fig_dir, n_boot)
    lines = [line for section in SECTIONS for line in section(c)]
    path = c.results / "report.md"
    path.write_text("\n".join(lines))
    for name in SUMMARY_TABLES:
        if not c.tables[name].empty:
            c.tables[name].to_csv(c.results / f"summary_{name}.csv", index=False)
    return path
