"""Figures of edge circuits: F against the number of edges per task (every edge method, with the node
circuit's F as the ceiling), and the studied edge circuit drawn as a graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.eval import tables, verdict
from figures import plots, style

MAX_DRAWN_EDGES = 40  # the case-study graph draws the strongest edges only (|effect|), and says how many it left out
N_BOOT = 400


def _edge_views(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, verdict.TaskView]]:
    circ, ref = tables.circuits(df, "edges"), tables.references(df)
    if circ.empty or ref.empty:
        return circ, {}
    return circ, {t: verdict.TaskView(circ, ref, t, N_BOOT) for t in sorted(circ.task.unique())}


def faithfulness_vs_edges(df: pd.DataFrame, out: Path) -> list[Path]:
    """F (test, mean over seeds, 95% interval) against edges kept, per task and edge method; dashed: the
    node circuit's own F (every candidate edge kept), the most an edge circuit can reach."""
    circ, views = _edge_views(df)
    if not views:
        return []
    style.setup()
    methods = style.methods_in(circ)
    fig, axes = style.task_grid(list(views))
    for task, ax in axes.items():
        v = views[task]
        for m in methods:
            band = plots._band(v, v.c[(v.c.method == m) & (v.c.kind == "cut")])  # the node figures' bands
            if band.empty:
                continue
            k, est, lo, hi = (band[c].to_numpy(float) for c in ("size", "F", "lo", "hi"))
            c = style.color(m, methods)
            ax.plot(k, est, marker="o", ms=3, color=c, label=style.label(m))
            ax.fill_between(k, lo, hi, color=c, alpha=0.15, lw=0)
            nat = v.c[(v.c.method == m) & (v.c.kind == "native")]
            if len(nat):
                ax.scatter(nat.size_nodes, nat.F_test, s=10, color=c, alpha=0.5, marker="x")
        full = d_full(v)
        if np.isfinite(full):
            ax.axhline(full, ls="--", color="k", lw=0.8, label="node circuit (every edge kept)")
        ax.set_xscale("log")
        ax.set_title(task)
        ax.set_xlabel("edges kept")
        ax.set_ylabel("F (test)")
    first = next(iter(axes.values()))
    first.legend(loc="lower right")
    fig.tight_layout()
    fig.suptitle("Edge circuits: F on test vs edges kept (lines: cuts, mean and 95% t interval over seeds; "
                 "x: the edge mask's own circuits)", y=1.03)
    return style.save(fig, out, "faithfulness_vs_edges")


def d_full(v: verdict.TaskView) -> float:
    """Mean over seeds of the test F with every candidate edge kept (each seed's largest cut)."""
    cuts = v.c[v.c.kind == "cut"]
    if cuts.empty:
        return float("nan")
    top = cuts.sort_values("size_nodes").groupby("seed").tail(1)
    return float(top.F_test.mean())


def edge_case_study(df: pd.DataFrame, out: Path) -> list[Path]:
    """Per task, the edge mask's studied circuit (first seed; another edge method where the mask did not
    run) as a graph: one row per SAE site and the metric on top, nodes at their positions labelled by
    latent, edge width by |effect| inside the circuit (blue supports the clean answer, red opposes)."""
    d = tables.ok_rows(df)
    d = d[d.get("size_unit", pd.Series("nodes", index=d.index)) == "edges"]
    studied = d[d.metric == "studied"][["task", "seed", "method", "circuit"]]
    edges = d[d.metric == "circuit_edge"].merge(studied, on=["task", "seed", "method", "circuit"])
    if edges.empty:
        return []
    style.setup()
    import matplotlib.pyplot as plt

    picks = []
    for task, g in edges.groupby("task"):
        m = verdict.EDGE_REFERENCE if (g.method == verdict.EDGE_REFERENCE).any() else sorted(g.method.unique())[0]
        g = g[g.method == m]
        picks.append((task, m, int(g.seed.min()), g[g.seed == g.seed.min()]))
    ref = tables.references(df)
    fig, axes = plt.subplots(len(picks), 1, figsize=(10, 3.8 * len(picks)), squeeze=False)
    for ax, (task, m, seed, g) in zip(axes[:, 0], picks):
        labels = ref.loc[(task, seed), "position_labels"] if (task, seed) in ref.index else []
        _draw(ax, g, list(labels))
        ax.set_title(f"{task}: {style.short(m)} studied edge circuit, seed {seed} ({len(g)} edges"
                     + (f", the {MAX_DRAWN_EDGES} strongest drawn" if len(g) > MAX_DRAWN_EDGES else "") + ")")
    fig.tight_layout()
    return style.save(fig, out, "edge_case_study")


def _draw(ax, g: pd.DataFrame, position_labels: list[str]) -> None:
    g = g.reindex(g.value.abs().sort_values(ascending=False).index).head(MAX_DRAWN_EDGES)
    ends = [(r.site, int(r.pos), int(r.latent)) for r in g.itertuples()]
    downs = [(t.split("|")[0], int(t.split("|")[1]), int(t.split("|")[2])) for t in g.text if t != "metric"]
    nodes = sorted(set(ends) | set(downs), key=lambda k: (_site_order(k[0]), k[1], k[2]))
    sites = sorted({k[0] for k in nodes}, key=_site_order)
    used = sorted({k[1] for k in nodes})
    slot = {p: i for i, p in enumerate(used)}  # one column per position that holds a node
    y = {s: i for i, s in enumerate(sites)}
    pts: dict[tuple, tuple[float, float]] = {}
    groups: dict[tuple, list] = {}
    for key in nodes:
        groups.setdefault(key[:2], []).append(key)
    for (site, pos), grp in groups.items():
        k = len(grp)
        step = min(0.8 / max(k, 1), 0.25)
        for i, key in enumerate(grp):
            pts[key] = (slot[pos] + (i - (k - 1) / 2) * step, y[site] + (0.1 if i % 2 else 0.0))
    x_metric, y_metric = len(used) - 0.5 + 0.6, len(sites)
    w = g.value.abs().to_numpy()
    scale = 4.0 / w.max() if len(w) and w.max() > 0 else 1.0
    for r, a in zip(g.itertuples(), ends):
        b = (x_metric, y_metric) if r.text == "metric" else pts[tuple([r.text.split("|")[0], *map(int, r.text.split("|")[1:])])]
        ax.plot([pts[a][0], b[0]], [pts[a][1], b[1]], color="#1f77b4" if r.value >= 0 else "#d62728",
                lw=max(0.3, abs(r.value) * scale), alpha=0.7, zorder=1)
    for (_site, _pos, latent), (x, yy) in pts.items():
        ax.scatter([x], [yy], s=18, color="k", zorder=2)
        ax.annotate(str(latent), (x, yy), xytext=(2, 3), textcoords="offset points", fontsize=6)
    ax.scatter([x_metric], [y_metric], s=40, marker="s", color="k", zorder=2)
    ax.annotate("metric", (x_metric, y_metric), xytext=(4, 0), textcoords="offset points", fontsize=7)
    ax.set_yticks(list(range(len(sites))) + [y_metric])
    ax.set_yticklabels([s.replace("blocks.", "L").replace(".hook_resid_post", " resid") for s in sites] + ["metric"])
    ax.set_xticks(list(range(len(used))))
    ax.set_xticklabels([f"{p}: {position_labels[p]}" if p < len(position_labels) else str(p) for p in used],
                       rotation=30, ha="right", fontsize=7)
    ax.set_xlabel("position holding a node (node labels: latent index; blue: supports the clean answer, red: opposes)")
    ax.set_xlim(-0.6, x_metric + 0.6)
    ax.set_ylim(-0.5, y_metric + 0.5)
    ax.grid(False)


def _site_order(site: str) -> tuple[int, str]:
    parts = site.split(".")
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0, site)
