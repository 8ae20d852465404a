"""The Markdown report, made from stored rows only.

Headline table per task and method: nodes (and distinct latents) needed to reach normalised
faithfulness 0.8 / 0.9 / 0.95; faithfulness at fixed sizes; an area score; completeness of the
studied circuit; cost. Sizes are read off each method's own circuits: for ranking methods the
shared log-spaced grid, for the mask its own circuits, so a "nodes for F >= x" entry is the
smallest evaluated circuit that reached x (an upper bound between grid points).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

FIXED_K = (10, 30, 100)
THRESHOLDS = (0.8, 0.9, 0.95)


def _circuits(df: pd.DataFrame, task: str, method: str) -> pd.DataFrame:
    d = df[(df.task == task) & (df.method == method) & (df.circuit >= 0) & (df.status == "ok")]
    wide = d[d.metric.isin(["size_nodes", "size_latents", "faithfulness_norm", "completeness_norm"])]
    return wide.pivot_table(index="circuit", columns="metric", values="value", aggfunc="first").dropna(subset=["size_nodes"])


def envelope(c: pd.DataFrame, k: float) -> float:
    """Best faithfulness among the method's circuits of at most ``k`` nodes (NaN if none)."""
    small = c[c.size_nodes <= k]
    return float(small.faithfulness_norm.max()) if len(small) else float("nan")


def area_score(c: pd.DataFrame, n_candidates: float, n_points: int = 25) -> float:
    """Mean of the envelope over a log-spaced grid of sizes 1..N (circuits above N ignored)."""
    if c.empty or not n_candidates:
        return float("nan")
    ks = np.geomspace(1, n_candidates, n_points)
    vals = [envelope(c, k) for k in ks]
    return float(np.nanmean([0.0 if math.isnan(v) else v for v in vals]))


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, method) with the headline numbers."""
    rows = []
    for task in sorted(df.task.unique()):
        ref = df[(df.task == task) & (df.method == "(reference)")]
        refd = dict(zip(ref.metric, ref.value))
        n_cand = refd.get("n_candidates", float("nan"))
        for method in sorted(m for m in df[df.task == task].method.unique() if not m.startswith("(")):
            cell = df[(df.task == task) & (df.method == method)]
            err = cell[cell.status == "error"]
            row: dict = {"task": task, "method": method}
            if len(err):
                row["error"] = err.error.iloc[0]
                rows.append(row)
                continue
            c = _circuits(df, task, method)
            for t in THRESHOLDS:
                ok = c[c.faithfulness_norm >= t]
                row[f"nodes@F>={t}"] = int(ok.size_nodes.min()) if len(ok) else None
                row[f"latents@F>={t}"] = int(ok.loc[ok.size_nodes.idxmin(), "size_latents"]) if len(ok) else None
            for k in FIXED_K:
                row[f"F@k<={k}"] = envelope(c, k)
            row["area"] = area_score(c, n_cand)
            chosen = cell[cell.metric == "knockout_model"].circuit
            if len(chosen) and int(chosen.iloc[0]) in c.index:
                ch = c.loc[int(chosen.iloc[0])]
                row["studied_nodes"] = int(ch.size_nodes)
                row["studied_F"] = float(ch.faithfulness_norm)
                row["completeness"] = float(ch.completeness_norm)
            costs = dict(zip(cell[cell.circuit < 0].metric, cell[cell.circuit < 0].value))
            row["seconds"] = costs.get("wall_seconds")
            row["fwd_prompts"] = costs.get("forward_prompts")
            row["bwd_prompts"] = costs.get("backward_prompts")
            row["mem_growth_mb"] = costs.get("peak_memory_mb")
            rows.append(row)
    return pd.DataFrame(rows)


def verdict(s: pd.DataFrame) -> list[str]:
    """Plain sentences: does the mask need fewer nodes than the best thresholding method?"""
    out = []
    for task, g in s.groupby("task"):
        if "binary_mask" not in set(g.method) or "nodes@F>=0.9" not in g:
            continue
        mask = g[g.method == "binary_mask"].iloc[0]
        others = g[(g.method != "binary_mask") & g["nodes@F>=0.9"].notna()]
        m_nodes = mask.get("nodes@F>=0.9")
        if others.empty and (m_nodes is None or pd.isna(m_nodes)):
            out.append(f"- **{task}**: no method reached F >= 0.9.")
            continue
        if others.empty:
            out.append(f"- **{task}**: only the mask reached F >= 0.9 ({int(m_nodes)} nodes).")
            continue
        best = others.loc[others["nodes@F>=0.9"].idxmin()]
        if m_nodes is None or pd.isna(m_nodes):
            out.append(f"- **{task}**: the mask never reached F >= 0.9; {best.method} did with {int(best['nodes@F>=0.9'])} nodes.")
            continue
        ratio = best["nodes@F>=0.9"] / m_nodes
        word = "beats" if ratio > 1.0 else ("ties" if ratio == 1.0 else "loses to")
        out.append(f"- **{task}**: the mask {word} the best thresholding method ({best.method}): "
                   f"{int(m_nodes)} vs {int(best['nodes@F>=0.9'])} nodes for F >= 0.9 ({ratio:.1f}x).")
    return out


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if float(v).is_integer():
            return f"{int(v):,}"
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def markdown_table(s: pd.DataFrame, cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in s.iterrows():
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def write_report(df: pd.DataFrame, results: Path, fig_dir: Path) -> Path:
    s = summary(df)
    run = {}
    if (results / "run.json").is_file():
        run = json.loads((results / "run.json").read_text())
    cfg = run.get("config", {})
    cols = ["task", "method", "nodes@F>=0.8", "nodes@F>=0.9", "latents@F>=0.9", "nodes@F>=0.95",
            "F@k<=10", "F@k<=30", "F@k<=100", "area", "completeness", "seconds", "fwd_prompts", "bwd_prompts", "mem_growth_mb"]
    ok = s[s.get("error").isna()] if "error" in s else s
    lines = [
        "# SAE-latent circuit discovery: benchmark report", "",
        f"Preset `{cfg.get('preset', '?')}`, error policy `{cfg.get('error_policy', '?')}`, ablation `{cfg.get('ablation', '?')}`, "
        f"seed {cfg.get('seed', '?')}, {cfg.get('n_train', '?')} train / {cfg.get('n_test', '?')} test prompts per task "
        f"(methods see train only; every number below is on the held-out test split).", "",
        "Faithfulness is normalised: F = (m(C) − m(∅)) / (m(M+SAE) − m(∅)), m = mean logit difference. "
        "`nodes@F>=x`: smallest evaluated circuit reaching x, in (position, latent) nodes; `latents@…`: its distinct latents. "
        "`F@k<=K`: best F among the method's circuits of at most K nodes. `area`: mean of that envelope over 25 log-spaced sizes "
        "from 1 to all candidate nodes (higher is better). `completeness`: F(M \\ C) of the studied circuit (the smallest with "
        "F >= 0.9, else the most faithful); near 0 is complete. Cost is one method run on one task (the mask: its whole lambda sweep); "
        "`fwd/bwd_prompts` count prompts through the model. `mem_growth_mb`: peak resident memory above the level at the "
        "start of the run (on CPU the allocator reuses memory freed by earlier cells, so this undercounts; on CUDA it is "
        "torch's peak allocation).", "",
        "## Headline", "", markdown_table(ok, [c for c in cols if c in ok or c in ("task", "method")]), "",
        "## Does masking beat the thresholding methods here?", "", *verdict(ok), "",
    ]
    if "error" in s and s["error"].notna().any():
        lines += ["## Failed cells", ""] + [f"- {r.task} / {r.method}: {r.error}" for _, r in s[s["error"].notna()].iterrows()] + [""]
    figs = sorted(p.name for p in fig_dir.glob("*.png")) if fig_dir.is_dir() else []
    if figs:
        rel = Path(fig_dir).resolve().relative_to(Path(results).resolve()) if Path(fig_dir).resolve().is_relative_to(Path(results).resolve()) else Path(fig_dir)
        lines += ["## Figures", ""] + [f"![{f}]({rel / f})" for f in figs] + [""]
    path = results / "report.md"
    path.write_text("\n".join(lines))
    s.to_csv(results / "summary.csv", index=False)
    return path
