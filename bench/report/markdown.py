"""Markdown helpers of the report: numbers, intervals and tables as text."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

F_NAME = "F = (m(C) − m(∅)) / (m(M+SAE) − m(∅))"


def fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v)
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if v.is_integer() and abs(v) >= 1:
            return f"{int(v):,}"
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def markdown_table(df: pd.DataFrame, cols: list[str] | None = None) -> str:
    if df is None or df.empty:
        return "(no data)"
    cols = [c for c in (cols or list(df.columns)) if c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def ci(est, lo, hi, digits: int = 3) -> str:
    if est is None or not np.isfinite(est):
        return "–"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{est:.{digits}f}"
    return f"{est:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def headline_wide(matched: pd.DataFrame, unit: str = "nodes") -> pd.DataFrame:
    """One row per (task, method), one column per matched target: "F [lo, hi] @k" (k in ``unit``)."""
    if matched.empty:
        return matched
    rows = []
    for (task, method), g in matched.groupby(["task", "method"]):
        row = {"task": task, "method": method}
        for _, r in g.sort_values("target").iterrows():
            row[f"~{r.target} {unit}"] = f"{ci(r.F, r.lo, r.hi, 2)} @{fmt(r.sizes[0]) if len(set(r.sizes)) == 1 else '/'.join(map(str, r.sizes))}"
        rows.append(row)
    return pd.DataFrame(rows)
