"""The figure functions. Each takes the results table (rows only) and an output folder.

Every figure names the faithfulness form it plots: the normalised one,
``(m(C) - m(empty)) / (m(M+SAE) - m(empty))``, unless its axis says otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from figures import style

F_LABEL = "faithfulness F (normalised)"
MAX_LATENTS = 30  # per SAE in the case-study heatmaps


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"]


def _tasks(df: pd.DataFrame) -> list[str]:
    return sorted(df["task"].unique())


def _curve(df: pd.DataFrame, task: str, method: str, metric: str) -> pd.DataFrame:
    d = _ok(df)
    d = d[(d.task == task) & (d.method == method) & (d.circuit >= 0)]
    wide = d[d.metric.isin(["size_nodes", metric])].pivot_table(index="circuit", columns="metric", values="value", aggfunc="first")
    if metric not in wide or "size_nodes" not in wide:
        return pd.DataFrame(columns=["size_nodes", metric])
    return wide.dropna().sort_values("size_nodes")


def _reference(df: pd.DataFrame, task: str) -> dict[str, float]:
    d = df[(df.task == task) & (df.method == "(reference)")]
    return dict(zip(d.metric, d.value))


def _vs_size(df: pd.DataFrame, out: Path, metric: str, name: str, ylabel: str, title: str, full_model_line: bool) -> list[Path]:
    style.setup()
    tasks, methods = _tasks(df), style.methods_in(df)
    fig, axes = style.task_grid(tasks)
    for task, ax in axes.items():
        for m in methods:
            c = _curve(df, task, m, metric)
            if c.empty:
                continue
            x = c["size_nodes"].clip(lower=0.8)
            marker = "o" if m == "binary_mask" else "."
            ax.plot(x, c[metric], marker=marker, ms=4, lw=1.4, color=style.color(m, methods), label=style.label(m))
        ref = _reference(df, task)
        if metric == "faithfulness_norm":
            ax.axhline(1.0, color="k", lw=0.8, ls="-", alpha=0.6, label="model+SAEs (all latents)")
            denom = ref.get("m_sae", np.nan) - ref.get("m_empty", np.nan)
            if full_model_line and np.isfinite(denom) and denom != 0:
                ax.axhline((ref["m_model"] - ref["m_empty"]) / denom, color="k", ls=":", lw=0.9, label="full model (no SAEs)")
        else:
            ax.axhline(0.0, color="k", lw=0.8, alpha=0.6)
        ax.set_xscale("log")
        n_test = df[df.task == task]["n_test"].max()
        ax.set_title(f"{task}  (held-out test, n={n_test})")
        ax.set_xlabel("circuit size  (position, latent) nodes, log")
        ax.set_ylabel(ylabel)
    handles, labels = next(iter(axes.values())).get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, bbox_to_anchor=(0.5, -0.04))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return style.save(fig, out, name)


def faithfulness_vs_size(df: pd.DataFrame, out: Path) -> list[Path]:
    return _vs_size(df, out, "faithfulness_norm", "faithfulness_vs_size", F_LABEL,
                    "Faithfulness vs circuit size on the held-out test split\nF = (m(C) − m(∅)) / (m(M+SAE) − m(∅)), m = mean logit difference", True)


def completeness_vs_size(df: pd.DataFrame, out: Path) -> list[Path]:
    return _vs_size(df, out, "completeness_norm", "completeness_vs_size", "F(M \\ C)  (0 = complete)",
                    "Completeness: the model with the circuit's latents ablated at every position", False)


def knockout_scatter(df: pd.DataFrame, out: Path) -> list[Path]:
    style.setup()
    tasks, methods = _tasks(df), style.methods_in(df)
    fig, axes = style.task_grid(tasks, width=3.8, height=3.6)
    d = _ok(df)
    for task, ax in axes.items():
        lo, hi = 0.0, 1.0
        for m in methods:
            k = d[(d.task == task) & (d.method == m) & d.metric.isin(["knockout_model", "knockout_circuit"])]
            w = k.pivot_table(index="sample", columns="metric", values="value", aggfunc="first").dropna()
            if w.empty:
                continue
            size = d[(d.task == task) & (d.method == m) & (d.metric == "size_nodes") & (d.circuit == k.circuit.iloc[0])]["value"]
            lab = f"{style.label(m)} ({int(size.iloc[0]) if len(size) else '?'} nodes)"
            ax.scatter(w["knockout_model"], w["knockout_circuit"], s=14, alpha=0.75, color=style.color(m, methods), label=lab)
            lo, hi = min(lo, w.values.min()), max(hi, w.values.max())
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, ls="--", label="y = x (complete)")
        ax.set_xlabel("F(M \\ K)  model without K")
        ax.set_ylabel("F(C \\ K)  circuit without K")
        ax.set_title(task)
        ax.legend(loc="upper left", fontsize=7)
    fig.suptitle("Knockout completeness: random subsets K of each method's studied circuit")
    fig.tight_layout()
    return style.save(fig, out, "knockout_scatter")


def mask_nestedness(df: pd.DataFrame, out: Path) -> list[Path]:
    style.setup()
    tasks, methods = _tasks(df), style.methods_in(df)
    fig, axes = style.task_grid(tasks, width=4.0, height=2.8)
    d = _ok(df)
    for task, ax in axes.items():
        for m in methods:
            n = d[(d.task == task) & (d.method == m) & (d.metric == "nestedness")]
            if n.empty:
                continue
            sizes = d[(d.task == task) & (d.method == m) & (d.metric == "size_nodes")].set_index("circuit")["value"]
            x = sizes.reindex(n.circuit).values
            order = np.argsort(x)
            ax.plot(np.clip(x[order], 0.8, None), n.value.values[order], marker="o", color=style.color(m, methods), label=style.label(m))
        ax.set_ylim(-0.05, 1.05)
        ax.set_xscale("log")
        ax.set_xlabel("size of the smaller circuit (nodes, log)")
        ax.set_ylabel("fraction inside next larger")
        ax.set_title(task)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right")
    fig.suptitle("Mask nestedness across the lambda sweep (1 = circuits are nested)")
    fig.tight_layout()
    return style.save(fig, out, "mask_nestedness")


def cost(df: pd.DataFrame, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    style.setup()
    tasks, methods = _tasks(df), style.methods_in(df)
    metrics = [("wall_seconds", "wall time (s, log)"), ("forward_prompts", "forward passes (prompts, log)"),
               ("backward_prompts", "backward passes (prompts)"), ("peak_memory_mb", "RSS growth during the run (MiB)")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.0 * len(metrics), 3.4))
    d = _ok(df)
    width = 0.8 / max(1, len(methods))
    for ax, (metric, ylab) in zip(axes, metrics):
        for j, m in enumerate(methods):
            vals = [d[(d.task == t) & (d.method == m) & (d.metric == metric)]["value"] for t in tasks]
            y = [v.iloc[0] if len(v) else np.nan for v in vals]
            ax.bar(np.arange(len(tasks)) + (j - (len(methods) - 1) / 2) * width, y, width, color=style.color(m, methods), label=style.label(m))
        ax.set_xticks(range(len(tasks)), tasks, rotation=20)
        ax.set_ylabel(ylab)
        if metric in ("wall_seconds", "forward_prompts"):
            ax.set_yscale("log")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(methods), bbox_to_anchor=(0.5, -0.06))
    fig.suptitle("Cost of one method run per task (the mask: its whole lambda sweep)")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return style.save(fig, out, "cost")


def case_study(df: pd.DataFrame, out: Path) -> list[Path]:
    """One heatmap per task: the smallest circuit reaching F >= 0.9 (else the most faithful).

    One row of panels per SAE (layer order), positions on x labelled with the first test prompt's
    tokens, the circuit's latents on y. Ranking methods colour nodes by score; the mask marks them.
    """
    import matplotlib.pyplot as plt

    style.setup()
    written: list[Path] = []
    d = _ok(df)
    for task in _tasks(df):
        nodes_all = d[(d.task == task) & (d.metric == "circuit_node")]
        methods = [m for m in style.methods_in(df) if m in set(nodes_all.method)]
        if not methods:
            continue
        m = "binary_mask" if "binary_mask" in methods else methods[0]
        nodes = nodes_all[nodes_all.method == m]
        circuit = int(nodes.circuit.iloc[0])
        faith = d[(d.task == task) & (d.method == m) & (d.circuit == circuit) & (d.metric == "faithfulness_norm")]["value"]
        tok_row = df[(df.task == task) & (df.metric == "tokens")]
        tokens = json.loads(tok_row.circuit_params.iloc[0]) if len(tok_row) else None
        sites = sorted(nodes.site.unique(), key=lambda s: int(s.split(".")[1]) if s.split(".")[1].isdigit() else 0)
        n_pos = int(_reference(df, task).get("n_positions", nodes.pos.max() + 1))
        # Large circuits (IOI: hundreds of latents) would make an unreadable strip: show each SAE's
        # MAX_LATENTS latents present at the most positions (then by |score|), and say how many are hidden.
        lat_lists, hidden = [], []
        for s_ in sites:
            ns = nodes[nodes.site == s_]
            rank = ns.assign(a=ns.value.abs()).groupby("latent").agg(n=("pos", "size"), a=("a", "sum"))
            top = rank.sort_values(["n", "a"], ascending=False).index[:MAX_LATENTS]
            lat_lists.append(sorted(int(v) for v in top))
            hidden.append(len(rank) - len(top))
        heights = [max(1, len(lats)) for lats in lat_lists]
        fig_h = 1.0 + 0.22 * sum(heights) + 0.35 * len(sites)
        fig, axes = plt.subplots(len(sites), 1, figsize=(max(5.0, 0.3 * n_pos + 1.8), fig_h), squeeze=False,
                                 gridspec_kw={"height_ratios": heights}, sharex=True)
        fig.subplots_adjust(top=1 - 0.8 / fig_h, bottom=0.9 / fig_h, hspace=0.35 * 8 / fig_h)  # margins in inches
        scored = m != "binary_mask"
        lim = nodes.value.abs().max() if scored and len(nodes) else 1.0
        for ax, site, lats, n_hidden in zip(axes[:, 0], sites, lat_lists, hidden):
            s = nodes[(nodes.site == site) & nodes.latent.isin(lats)]
            n_site = int((nodes.site == site).sum())
            grid = np.full((max(1, len(lats)), n_pos), np.nan)
            for _, r in s.iterrows():
                grid[lats.index(r.latent), int(r.pos)] = r.value if scored else 1.0
            cmap = "RdBu_r" if scored else "Reds"
            im = ax.imshow(grid, aspect="auto", cmap=cmap, vmin=-lim if scored else 0, vmax=lim, interpolation="nearest")
            ax.set_yticks(range(len(lats)), [str(v) for v in lats], fontsize=7)
            more = f", {n_hidden} latents not shown" if n_hidden else ""
            ax.set_ylabel(f"{site.replace('.hook_resid_post', '')}\n({n_site} nodes{more})", fontsize=8)
            ax.set_xticks(np.arange(-0.5, n_pos, 1), minor=True)
            ax.set_yticks(np.arange(-0.5, len(lats), 1), minor=True)
            ax.grid(which="minor", color="0.85", lw=0.5)
            ax.grid(which="major", visible=False)
            ax.tick_params(which="minor", length=0)
        labels = tokens if tokens and len(tokens) == n_pos else [str(i) for i in range(n_pos)]
        axes[-1, 0].set_xticks(range(n_pos), labels, rotation=90, fontsize=7)
        axes[-1, 0].set_xlabel("position (first test prompt's tokens)")
        if scored:
            fig.colorbar(im, ax=axes[:, 0].tolist(), fraction=0.03, label="score (drop in LD when ablated)")
        f = f", F={faith.iloc[0]:.2f}" if len(faith) else ""
        which = "smallest" if len(faith) and faith.iloc[0] >= 0.9 else "most faithful (none reached F ≥ 0.9):"
        goal = " circuit with F ≥ 0.9" if which == "smallest" else " circuit"
        fig.suptitle(f"{task}: {which} {style.label(m)}{goal} ({len(nodes)} nodes{f})\nlatents (y) at positions (x), one row per SAE", fontsize=9)
        written += style.save(fig, out, f"case_study_{task}")
    return written
