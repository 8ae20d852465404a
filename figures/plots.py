"""The figure functions. Each takes the results table (rows only) and an output folder.

Every figure names the faithfulness form it plots: the headline form
F = (m(C) − m(∅)) / (m(M+SAE) − m(∅)) on the held-out test split, unless its axis says otherwise.
Bands and the verdict's intervals are 95% Student-t intervals over seeds (one seed: a bootstrap over
test prompts), :func:`bench.eval.stats.interval`, as in the report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.eval import stats, tables, verdict
from figures import style

F_LABEL = "F on test, normalised by M+SAE"
MAX_LATENTS = 12  # per SAE in the case-study heatmaps (the most positions, then the largest |score|)
N_BOOT = 400


def _views(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, verdict.TaskView]]:
    circ, ref = tables.circuits(df), tables.references(df)
    if circ.empty or ref.empty:
        return circ, ref, {}
    return circ, ref, {t: verdict.TaskView(circ, ref, t, N_BOOT) for t in sorted(circ.task.unique())}


def _band(v: verdict.TaskView, d: pd.DataFrame, column: str = "test_ld") -> pd.DataFrame:
    """Mean over seeds and 95% interval at each size of ``d`` (one circuit per seed and size).

    Only sizes evaluated in every seed are drawn: a size only one seed has (another seed's mask
    produced it) would average one seed where its neighbours average all, and zig-zag the line.
    """
    rows = []
    d = d[d[column].map(len) > 0]  # the complement is measured at the grid and matched sizes only
    n_seeds = len(v.seeds)
    for k, g in d.groupby("size_nodes"):
        if g.seed.nunique() < n_seeds:
            continue
        per = {int(r.seed): v.f_stat(int(r.seed), getattr(r, column)) for r in g.itertuples()}
        est, lo, hi = stats.interval(v.boot, per)
        rows.append({"size": k, "latents": g.size_latents.mean(), "F": est, "lo": lo, "hi": hi})
    return pd.DataFrame(rows).sort_values("size") if rows else pd.DataFrame(columns=["size", "latents", "F", "lo", "hi"])


def _vs_size(df: pd.DataFrame, out: Path, name: str, x: str, column: str, ylabel: str, title: str) -> list[Path]:
    style.setup()
    circ, ref, views = _views(df)
    if not views:
        return []
    methods = style.methods_in(df)
    fig, axes = style.task_grid(list(views))
    for task, ax in axes.items():
        v = views[task]
        for m in methods:
            d = v.c[(v.c.method == m) & (v.c.kind == "cut")]
            if d.empty:
                continue
            b = _band(v, d, column)
            xs = (b["size"] if x == "nodes" else b["latents"]).clip(lower=0.8)
            native = (v.c[(v.c.method == m)].kind == "native").any()
            lab = style.label(m) + (" (read as a ranking)" if native else "")
            ax.plot(xs, b.F, lw=1.0 if native else 1.4, ls="--" if native else "-", color=style.color(m, methods), label=lab)
            ax.fill_between(xs, b.lo, b.hi, color=style.color(m, methods), alpha=0.15, lw=0)
            nat = v.c[(v.c.method == m) & (v.c.kind == "native")]
            nat = nat[nat[column].map(len) > 0]
            if len(nat):
                f = [v.f_stat(int(r.seed), getattr(r, column))[0] for r in nat.itertuples()]
                nx = (nat.size_nodes if x == "nodes" else nat.size_latents).clip(lower=0.8)
                ax.scatter(nx, f, s=16, marker="o", color=style.color(m, methods), edgecolor="k", lw=0.4, zorder=3,
                           label=f"{style.label(m)}: its own circuits (each seed)")
        ax.axhline(1.0 if column == "test_ld" else 0.0, color="k", lw=0.8, alpha=0.6)
        ax.set_xscale("log")
        seeds = len(v.seeds)
        nt = df[df.task == task].n_test.dropna()
        n_test = f"{int(nt.min())}" if nt.min() == nt.max() else f"{int(nt.min())}–{int(nt.max())}"
        ax.set_title(f"{task}  (test n={n_test} × {seeds} seed{'s' * (seeds > 1)})")
        ax.set_xlabel(f"circuit size, {'(position, latent) nodes' if x == 'nodes' else 'distinct latents (mean over seeds)'} (log)")
        ax.set_ylabel(ylabel)
    handles, labels = next(iter(axes.values())).get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, bbox_to_anchor=(0.5, -0.08))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return style.save(fig, out, name)


def faithfulness_vs_size(df: pd.DataFrame, out: Path) -> list[Path]:
    return _vs_size(df, out, "faithfulness_vs_size", "nodes", "test_ld", F_LABEL,
                    f"Faithfulness vs circuit size on the held-out test split (bands: 95% {_band_kind(df)})")


def _band_kind(df: pd.DataFrame) -> str:
    """What the bands of a figure are: a t interval over seeds, or with one seed over prompts only."""
    return "t interval over seeds" if df.seed.nunique() > 1 else f"interval, {stats.ONE_SEED}"


def faithfulness_vs_latents(df: pd.DataFrame, out: Path) -> list[Path]:
    return _vs_size(df, out, "faithfulness_vs_latents", "latents", "test_ld", F_LABEL,
                    "Faithfulness vs distinct latents on the held-out test split")


def completeness_vs_size(df: pd.DataFrame, out: Path) -> list[Path]:
    return _vs_size(df, out, "completeness_vs_size", "nodes", "complement_ld", "F(M \\ C) (test; 0 = complete)",
                    "Completeness: the model with the circuit's latents ablated at every position (lower = more complete)")


def verdict_forest(df: pd.DataFrame, out: Path) -> list[Path]:
    """F(mask) − F(other) at each matched size, with the paired 95% interval, coded by outcome.

    Colour is the verdict (beats / tied / loses; hollow: saturated, both F ≥ 0.95 in every seed, shown
    but not judged), so the answer reads at a glance; each panel's title carries its tally, which
    leaves out the reference methods (:data:`bench.eval.verdict.REFERENCES`, rows marked "(ref.)").
    Rows are the rival and the target size, IG and AtP first. The random baseline is left out: its
    differences (about 1) would set the scale and hide the rivals' (report.md lists them).
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    style.setup()
    circ, ref, views = _views(df)
    pw = verdict.pairwise(list(views.values())) if views else pd.DataFrame()
    if pw.empty:
        return []
    shown = pw[pw.vs != "random"] if (pw.vs != "random").any() else pw
    tasks = sorted(shown.task.unique())
    order = {m: i for i, m in enumerate(style.RIVAL_ORDER)}
    pairs = sorted({(r.vs, int(r.target)) for r in shown.itertuples()}, key=lambda p: (order.get(p[0], 99), p[0], p[1]))
    row = {p: len(pairs) - 1 - i for i, p in enumerate(pairs)}
    fig, axes = plt.subplots(1, len(tasks), figsize=(2.4 * len(tasks) + 1.2, 0.26 * len(pairs) + 1.9),
                             squeeze=False, sharey=True)
    for ax, task in zip(axes[0], tasks):
        d = shown[shown.task == task]
        for r in d.itertuples():
            sat = r.verdict == "saturated"
            c = style.VERDICT_COLORS.get(r.verdict, "0.5")
            # a one-seed (percentile bootstrap) interval can miss its own point estimate: draw no negative arm
            ax.errorbar(r.diff, row[(r.vs, int(r.target))], xerr=[[max(0.0, r.diff - r.lo)], [max(0.0, r.hi - r.diff)]],
                        fmt="o", ms=4.5, color=c, mfc="white" if sat else c, capsize=2)
        for i in range(1, len(pairs)):  # a thin line between rivals
            if pairs[i][0] != pairs[i - 1][0]:
                ax.axhline(row[pairs[i]] + 0.5, color="0.75", lw=0.6)
        ax.axvline(0, color="k", lw=0.8)
        n = d[d.in_tally].verdict.value_counts()
        ax.set_title(f"{task}\n" + " · ".join(f"{w} {int(n.get(w, 0))}" for w in ("beats", "tied", "loses", "saturated")),
                     fontsize=8.5)
        ax.set_xlabel("F(mask) − F(rival)")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks([row[p] for p in pairs], [f"{style.short(v)}{' (ref.)' * (v in verdict.REFERENCES)} ~{t}"
                                                    for v, t in pairs], fontsize=8)
    handles = [Line2D([], [], ls="", marker="o", color=style.VERDICT_COLORS[w], mfc="white" if w == "saturated" else None,
                      label=words) for w, words in (("beats", "mask beats (interval > 0)"), ("tied", "tied (interval contains 0)"),
                                                    ("loses", "mask loses (interval < 0)"),
                                                    ("saturated", "saturated: both F ≥ 0.95 in every seed, not judged"))]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, bbox_to_anchor=(0.5, -0.01))
    over = "t interval over seeds" if int(shown.n_seeds.max()) > 1 else stats.ONE_SEED
    fig.suptitle("Does the mask find more faithful circuits than each rival at the same size? (test split, paired 95% "
                 f"{over};\nrows: rival and the mask's circuit size nearest ~10 / 30 / 100 / 300 "
                 "nodes; (ref.): a reference, not in the titles' tally; the random baseline is in report.md)", fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return style.save(fig, out, "verdict_matched_sizes")


def train_vs_test(df: pd.DataFrame, out: Path) -> list[Path]:
    style.setup()
    circ, _, views = _views(df)
    if circ.empty:
        return []
    methods = style.methods_in(df)
    fig, axes = style.task_grid(sorted(circ.task.unique()), width=3.8, height=3.4)
    for task, ax in axes.items():
        d = circ[circ.task == task]
        for m in methods:
            dm = d[d.method == m]
            if dm.empty:
                continue
            ax.scatter(dm.F_train, dm.F_test, s=8, alpha=0.6, color=style.color(m, methods), label=style.label(m))
            st = dm[dm.studied]
            ax.scatter(st.F_train, st.F_test, s=40, marker="*", color=style.color(m, methods), edgecolor="k", lw=0.5)
        lo = float(np.nanmin([d.F_train.min(), d.F_test.min(), 0]))
        hi = float(np.nanmax([d.F_train.max(), d.F_test.max(), 1]))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel("F on train (the split methods saw)")
        ax.set_ylabel("F on test (held out)")
        ax.set_title(task)
    handles, labels = next(iter(axes.values())).get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, bbox_to_anchor=(0.5, -0.06))
    fig.suptitle("Train vs test faithfulness of every evaluated circuit (★: the studied circuit, chosen on train)")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return style.save(fig, out, "train_vs_test")


def knockout_scatter(df: pd.DataFrame, out: Path) -> list[Path]:
    style.setup()
    circ = tables.circuits(df)
    d = tables.ok_rows(df)
    k = d[d.metric.isin(["knockout_model", "knockout_circuit"])]
    if k.empty or circ.empty:
        return []
    st = circ[circ.studied][["task", "seed", "method", "circuit", "size_nodes"]]
    k = k.merge(st, on=["task", "seed", "method", "circuit"])
    methods = style.methods_in(df)
    fig, axes = style.task_grid(sorted(k.task.unique()), width=3.8, height=3.6)
    for task, ax in axes.items():
        lo, hi = 0.0, 1.0
        for m in methods:
            km = k[(k.task == task) & (k.method == m)]
            w = km.pivot_table(index=["seed", "sample"], columns="metric", values="value", aggfunc="first").dropna()
            if w.empty:
                continue
            sizes = sorted(int(s) for s in km.size_nodes.unique())
            ax.scatter(w.knockout_model, w.knockout_circuit, s=12, alpha=0.7, color=style.color(m, methods),
                       label=f"{style.label(m)} ({'/'.join(map(str, sizes))} nodes)")
            lo, hi = min(lo, w.values.min()), max(hi, w.values.max())
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, ls="--", label="y = x (complete)")
        ax.set_xlabel("F(M \\ K)  model without K")
        ax.set_ylabel("F(C \\ K)  circuit without K")
        ax.set_title(task)
        ax.legend(loc="upper left", fontsize=6)
    fig.suptitle("Knockout: random latent subsets K of each method's studied circuit (chosen on train), removed at every position")
    fig.tight_layout()
    return style.save(fig, out, "knockout_scatter")


def mask_nestedness(df: pd.DataFrame, out: Path) -> list[Path]:
    style.setup()
    d = tables.ok_rows(df)
    n = d[d.metric.isin(["nestedness_latent_min", "nestedness_node_next"])]
    if n.empty:
        return []
    sizes = d[(d.metric == "size_nodes")][["task", "seed", "method", "circuit", "value"]].rename(columns={"value": "size"})
    n = n.merge(sizes, on=["task", "seed", "method", "circuit"])
    fig, axes = style.task_grid(sorted(n.task.unique()), width=4.0, height=2.8)
    for task, ax in axes.items():
        for metric, mk, lab in (("nestedness_latent_min", "o", "latents inside every larger circuit (paper's measure)"),
                                ("nestedness_node_next", "x", "nodes inside the next larger circuit")):
            g = n[(n.task == task) & (n.metric == metric)]
            ax.scatter(g["size"].clip(lower=0.8), g.value, marker=mk, s=18, label=lab)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xscale("log")
        ax.set_xlabel("size of the smaller circuit (nodes, log)")
        ax.set_ylabel("nestedness")
        ax.set_title(task)
    handles, labels = next(iter(axes.values())).get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, bbox_to_anchor=(0.5, -0.06))
    fig.suptitle("Nestedness of the mask's λ sweep, every seed (1 = nested)")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return style.save(fig, out, "mask_nestedness")


def mask_training(df: pd.DataFrame, out: Path) -> list[Path]:
    """The mask's training curves: node count, task loss and sparsity term per λ (first seed)."""
    import matplotlib.pyplot as plt

    style.setup()
    d = tables.ok_rows(df)
    tr = d[d.metric.str.startswith("trace_")]
    if tr.empty:
        return []
    tasks = sorted(tr.task.unique())
    metrics = sorted(tr.metric.unique())
    fig, axes = plt.subplots(len(tasks), len(metrics), figsize=(3.2 * len(metrics), 2.5 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        g = tr[(tr.task == task) & (tr.seed == tr[tr.task == task].seed.min())]
        lam = {int(c): p for c, p in zip(g.circuit, g.circuit_params)}
        circuits = sorted(g.circuit.unique())
        cmap = plt.get_cmap("viridis")
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            for ci, c in enumerate(circuits):
                gc = g[(g.circuit == c) & (g.metric == metric)].sort_values("sample")
                ax.plot(gc["sample"], gc.value, color=cmap(ci / max(1, len(circuits) - 1)), lw=1)
            if "nodes" in metric or "sparsity" in metric:
                ax.set_yscale("symlog")
            ax.set_title(f"{task}: {metric.removeprefix('trace_')}", fontsize=8)
            ax.set_xlabel("step")
        del lam
    fig.suptitle("Mask training per λ (colour: small λ dark → large λ light), first seed")
    fig.tight_layout()
    return style.save(fig, out, "mask_training")


def cost(df: pd.DataFrame, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    style.setup()
    co = tables.costs(df)
    if co.empty:
        return []
    tasks, methods = sorted(co.task.unique()), style.methods_in(df)
    metrics = [("wall_seconds", "wall time (s, log)"), ("forward_prompts", "forward passes (prompts, log)"),
               ("backward_prompts", "backward passes (prompts)"), ("peak_memory_mb", "peak memory above start (MiB)")]
    metrics = [m for m in metrics if m[0] in co]
    measures = sorted(set(df.loc[df.metric == "peak_memory_mb", "text"].dropna()) - {""})
    if measures:  # what the memory bars measure (bench.run.costs): e.g. cpu_heap_allocated, cuda_allocated
        metrics = [(m, f"{y}\n[{', '.join(measures)}]" if m == "peak_memory_mb" else y) for m, y in metrics]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.0 * len(metrics), 3.4), squeeze=False)
    width = 0.8 / max(1, len(methods))
    for ax, (metric, ylab) in zip(axes[0], metrics):
        for j, m in enumerate(methods):
            y = [co[(co.task == t) & (co.method == m)][metric].mean() for t in tasks]
            ax.bar(np.arange(len(tasks)) + (j - (len(methods) - 1) / 2) * width, y, width, color=style.color(m, methods), label=style.label(m))
        ax.set_xticks(range(len(tasks)), tasks, rotation=20)
        ax.set_ylabel(ylab)
        if metric in ("wall_seconds", "forward_prompts"):
            ax.set_yscale("log")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(methods)), bbox_to_anchor=(0.5, -0.08))
    fig.suptitle("Cost of one method run per task, mean over seeds (the mask: its whole λ sweep)")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return style.save(fig, out, "cost")


def case_study(df: pd.DataFrame, out: Path, labels: pd.DataFrame | None = None) -> list[Path]:
    """One figure per task: the mask's studied circuit (chosen on train), first seed, readable at
    normal size.

    Top: the circuit's node count per SAE and position (every node counted). Below, one panel per
    SAE (layer order): its top latents (those at the most positions, then the largest |score|) at
    each position. Positions on x are labelled from every test prompt (a token when it is the same
    in all prompts, else its role).
    """
    import matplotlib.pyplot as plt

    style.setup()
    written: list[Path] = []
    circ, ref = tables.circuits(df), tables.references(df)
    d = tables.ok_rows(df)
    nodes_all = d[d.metric == "circuit_node"]
    # bench.run.labels: each latent's top-activating token, when the run wrote them
    names = {} if labels is None else {(r.site, int(r.latent)): r.label for r in labels.itertuples()}
    y_note = ("y: index · its top-activating token over the world's text (share of its top 20) → the token its decoder "
              "direction promotes" if names else "y")
    for task in sorted(nodes_all.task.unique()):
        st = circ[(circ.task == task) & circ.studied]
        methods = [m for m in style.methods_in(df) if m in set(st.method)]
        if not methods:
            continue
        m = "binary_mask" if "binary_mask" in methods else methods[0]
        row = st[st.method == m].sort_values("seed").iloc[0]
        seed, circuit = int(row.seed), int(row.circuit)
        nodes = nodes_all[(nodes_all.task == task) & (nodes_all.method == m) & (nodes_all.seed == seed) & (nodes_all.circuit == circuit)]
        if nodes.empty:
            continue
        labels = ref.loc[(task, seed), "position_labels"] if (task, seed) in ref.index else []
        n_pos = int(ref.loc[(task, seed)].get("n_positions", nodes.pos.max() + 1)) if (task, seed) in ref.index else int(nodes.pos.max() + 1)
        sites = sorted(nodes.site.unique(), key=lambda s: int(s.split(".")[1]) if s.split(".")[1].isdigit() else 0)
        lat_lists, hidden = [], []
        for s_ in sites:
            ns = nodes[nodes.site == s_]
            rank = ns.assign(a=ns.value.abs().fillna(0)).groupby("latent").agg(n=("pos", "size"), a=("a", "sum"))
            top = rank.sort_values(["n", "a"], ascending=False).index[:MAX_LATENTS]
            lat_lists.append(sorted(int(v) for v in top))
            hidden.append(len(rank) - len(top))
        heights = [0.8 * len(sites)] + [max(1, len(lats)) for lats in lat_lists]
        fig_h = 1.4 + 0.2 * sum(heights) + 0.35 * len(sites)
        fig, all_axes = plt.subplots(len(sites) + 1, 1, figsize=(max(5.0, 0.32 * n_pos + 1.8), fig_h), squeeze=False,
                                     gridspec_kw={"height_ratios": heights}, sharex=True)
        fig.subplots_adjust(top=1 - 0.9 / fig_h, bottom=1.4 / fig_h, hspace=0.35 * 8 / fig_h)
        counts = np.zeros((len(sites), n_pos))
        for i, s_ in enumerate(sites):
            for pos, n in nodes[nodes.site == s_].groupby("pos").size().items():
                counts[i, int(pos)] = n
        top_ax, axes = all_axes[0, 0], all_axes[1:]
        top_ax.imshow(np.where(counts > 0, counts, np.nan), aspect="auto", cmap="Greys", vmin=0, vmax=max(1.0, counts.max()),
                      interpolation="nearest")
        for (i, j), n in np.ndenumerate(counts):
            if n:
                top_ax.text(j, i, str(int(n)), ha="center", va="center", fontsize=6.5,
                            color="white" if n > 0.6 * counts.max() else "black")
        top_ax.set_yticks(range(len(sites)), [s_.split(".hook_")[0] for s_ in sites], fontsize=7)
        top_ax.set_ylabel("nodes per\nposition", fontsize=8)
        top_ax.grid(False)
        scored = nodes.value.notna().any()
        lim = float(nodes.value.abs().max()) if scored else 1.0
        im = None
        for ax, site, lats, n_hidden in zip(axes[:, 0], sites, lat_lists, hidden):
            s = nodes[(nodes.site == site) & nodes.latent.isin(lats)]
            grid = np.full((max(1, len(lats)), n_pos), np.nan)
            for r in s.itertuples():
                grid[lats.index(r.latent), int(r.pos)] = r.value if scored else 1.0
            im = ax.imshow(grid, aspect="auto", cmap="RdBu_r" if scored else "Reds", vmin=-lim if scored else 0, vmax=lim,
                           interpolation="nearest")
            ax.set_yticks(range(len(lats)), [f"{v} · {names[(site, v)]}" if (site, v) in names else str(v) for v in lats],
                          fontsize=7)
            more = f", {n_hidden} latents not shown" if n_hidden else ""
            ax.set_ylabel(f"{site.replace('.hook_resid_post', '').replace('.hook_resid_pre', ' (pre)')}\n"
                          f"({int((nodes.site == site).sum())} nodes{more})", fontsize=8)
            ax.set_xticks(np.arange(-0.5, n_pos, 1), minor=True)
            ax.set_yticks(np.arange(-0.5, len(lats), 1), minor=True)
            ax.grid(which="minor", color="0.85", lw=0.5)
            ax.grid(which="major", visible=False)
            ax.tick_params(which="minor", length=0)
        xl = labels if len(labels) == n_pos else [str(i) for i in range(n_pos)]
        axes[-1, 0].set_xticks(range(n_pos), xl, rotation=90, fontsize=7)
        axes[-1, 0].set_xlabel("position (token if the same in every test prompt; else its role: IO = clean answer, S = patch answer)")
        if scored and im is not None:
            fig.colorbar(im, ax=all_axes[:, 0].tolist(), fraction=0.03, label="score (drop in LD when ablated)")
        fig.suptitle(f"{task}: {style.label(m)}, studied circuit (chosen on train), seed {seed}: {int(row.size_nodes)} nodes, "
                     f"F_train {row.F_train:.2f}, F_test {row.F_test:.2f}\nlatents ({y_note}) at positions (x), one row per SAE",
                     fontsize=9)
        written += style.save(fig, out, f"case_study_{task}")
    return written
