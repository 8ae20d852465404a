"""The measurements behind the report: matched-size faithfulness with intervals, paired verdicts,
each method's share of the greedy reference's F, interpolated sizes for a faithfulness level, area
against random, train vs test, completeness, knockout, stability and nestedness. Everything here
reads the wide views of :mod:`bench.eval.tables`.

Every interval of a per-seed statistic (matched F, the verdict's difference, area, share of the
reference) is :func:`bench.eval.stats.interval`: Student t over seeds, or with one seed the prompt
bootstrap; the level sizes keep the two-level bootstrap (a seed may never reach a level).

Faithfulness is the headline form (m(C) − m(∅)) / (m(M+SAE) − m(∅)) on the held-out test split
unless a column says otherwise.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from bench.eval import tables
from bench.eval.stats import Bootstrap, crossing_size, faithfulness_stat, interval, interval_kind, paired, verdict_word

REFERENCE_METHOD = "binary_mask"
RANDOM = "random"
LEVELS = (0.8, 0.9)
GREEDY = "greedy"
GREEDY_POOL = 128  # greedy's default pool, where its rows do not record theirs (metric diag_pool_size)

# Methods run as references, not contestants: shown in the pairwise table, left out of the verdict
# tally (``in_tally`` False), each with the reason the report gives.
REFERENCES = {
    "activation_patching": "exact patching on 8 train prompts: a noisy reference (its ranking's split-half "
                           "reliability on IOI is about 0)",
    GREEDY: "best-circuit reference (backward elimination over a pool, train split)",
}


class TaskView:
    """One task's circuits, baselines and bootstrap plan."""

    def __init__(self, circ: pd.DataFrame, ref: pd.DataFrame, task: str, n_boot: int = 2000):
        self.task = task
        self.c = circ[circ.task == task]
        self.ref = ref.loc[task] if task in ref.index.get_level_values(0) else pd.DataFrame()
        self.seeds = sorted(int(s) for s in self.ref.index) if len(self.ref) else []
        self.boot = Bootstrap({s: len(self.ref.loc[s, "m_sae"]) for s in self.seeds}, n_boot=n_boot)
        self.methods = sorted(self.c.method.unique())

    def f_stat(self, seed: int, ld: np.ndarray) -> tuple[float, np.ndarray]:
        r = self.ref.loc[seed]
        return faithfulness_stat(self.boot, seed, ld, r["m_sae"], r["m_empty"])

    def at_target(self, method: str, target: int) -> dict[int, pd.Series]:
        """seed -> the method's circuit standing for a headline target."""
        d = self.c[(self.c.method == method) & self.c.targets.map(lambda t: target in t)]
        return {int(r.seed): r for _, r in d.iterrows()}

    def targets(self) -> list[int]:
        return sorted({t for ts in self.c.targets for t in ts})


def _fmt_ci(est: float, lo: float, hi: float, digits: int = 2) -> str:
    if not np.isfinite(est):
        return "–"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{est:.{digits}f}"
    return f"{est:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def matched_table(views: list[TaskView]) -> pd.DataFrame:
    """Per task, headline target and method: matched size(s) and F on test ± 95% CI, F on train."""
    rows = []
    for v in views:
        for t in v.targets():
            for m in v.methods:
                at = v.at_target(m, t)
                if not at:
                    continue
                est = interval(v.boot, {s: v.f_stat(s, r.test_ld) for s, r in at.items()})
                sizes = sorted(int(r.size_nodes) for r in at.values())
                rows.append({"task": v.task, "target": t, "method": m, "sizes": sizes,
                             "k": int(np.median(sizes)), "latents": float(np.mean([r.size_latents for r in at.values()])),
                             "F": est[0], "lo": est[1], "hi": est[2],
                             "F_train": float(np.mean([r.F_train for r in at.values()])),
                             "complement": v.boot.combine({s: v.f_stat(s, r.complement_ld) for s, r in at.items()})[0],
                             "n_seeds": len(at)})
    return pd.DataFrame(rows)


# Both circuits at least this faithful in every seed: a difference there is overshoot above 1 (F can
# exceed 1 when a circuit drops latents that worked against the answer), not "smaller faithful circuits".
SATURATED = 0.95


def pairwise(views: list[TaskView], reference: str = REFERENCE_METHOD, costs: pd.DataFrame | None = None) -> pd.DataFrame:
    """F(reference) − F(other) at each matched size, one row per (task, target, other): see :func:`_pair_row`.
    The greedy reference is compared only at sizes within its pool (beyond it its cut is no search)."""
    rows = []
    for v in views:
        pool = _pool_sizes(costs if costs is not None else pd.DataFrame(), v.task)
        ref_m = reference if reference in v.methods else (v.methods[0] if v.methods else None)
        if ref_m is None:
            continue
        for t in v.targets():
            a = v.at_target(ref_m, t)
            for m in v.methods:
                b = v.at_target(m, t) if m != ref_m else {}
                common = sorted(set(a) & set(b))
                if m == GREEDY:
                    common = [s for s in common if b[s].size_nodes <= pool.get(s, GREEDY_POOL)]
                if common:
                    rows.append(_pair_row(v, t, ref_m, m, a, b, common))
    return pd.DataFrame(rows)


def _pair_row(v: TaskView, t: int, ref_m: str, m: str, a: dict, b: dict, common: list[int]) -> dict:
    """One comparison: per seed, F(ref_m) − F(m) on that seed's test prompts; the estimate and 95%
    interval over seeds (:func:`bench.eval.stats.interval`) give beats / tied / loses.

    "saturated" (kept, not judged) only where in **every** seed both F ≥ :data:`SATURATED`: a seed
    mean would hide one seed's circuit far from F = 1 (``F_method_min`` / ``F_vs_min`` show the lowest
    seed). ``n_positive`` of ``n_seeds`` seeds have a positive difference (``signs``). ``in_tally`` is
    False where either method is one of :data:`REFERENCES`.
    """
    fa = {s: v.f_stat(s, a[s].test_ld) for s in common}
    fb = {s: v.f_stat(s, b[s].test_ld) for s in common}
    est, lo, hi = interval(v.boot, {s: paired(fa[s], fb[s]) for s in common})
    f_a, f_b = np.array([fa[s][0] for s in common]), np.array([fb[s][0] for s in common])
    raw = verdict_word(lo, hi)
    saturated = bool(np.min(np.minimum(f_a, f_b)) >= SATURATED)
    n_pos = int(np.sum(f_a - f_b > 0))
    return {"task": v.task, "target": t, "k": int(np.median([a[s].size_nodes for s in common])),
            "sizes": "/".join(str(int(a[s].size_nodes)) for s in common), "method": ref_m, "vs": m,
            "F_method": float(f_a.mean()), "F_vs": float(f_b.mean()),
            "F_method_min": float(f_a.min()), "F_vs_min": float(f_b.min()),
            "diff": est, "lo": lo, "hi": hi, "verdict": "saturated" if saturated else raw, "verdict_interval": raw,
            "n_positive": n_pos, "n_seeds": len(common), "signs": f"{n_pos} of {len(common)} seeds",
            "interval": interval_kind(len(common)), "in_tally": ref_m not in REFERENCES and m not in REFERENCES}


SHARE_MIN_F = 0.2


def reference_share(views: list[TaskView], costs: pd.DataFrame) -> pd.DataFrame:
    """How far each method is from the best circuit the greedy reference found: per task, headline
    target and method, F_test(method) / F_test(greedy) at the same matched size in each seed, the mean
    over seeds and the interval of the per-seed ratio (:func:`bench.eval.stats.interval`).

    Only where greedy ran, and only seeds where the size is within greedy's pool (its
    ``diag_pool_size``, else :data:`GREEDY_POOL`): beyond the pool its order is no searched circuit.
    """
    rows = []
    for v in views:
        if GREEDY not in v.methods:
            continue
        pool = _pool_sizes(costs, v.task)
        for t in v.targets():
            g = v.at_target(GREEDY, t)
            for m in v.methods:
                c = v.at_target(m, t) if m != GREEDY else {}
                seeds = [s for s in sorted(set(g) & set(c)) if g[s].size_nodes <= pool.get(s, GREEDY_POOL)]
                if seeds:
                    rows.append(_share_row(v, t, m, c, g, seeds, pool))
    return pd.DataFrame(rows)


def _share_row(v: TaskView, t: int, m: str, c: dict, g: dict, seeds: list[int], pool: dict) -> dict:
    fm = {s: v.f_stat(s, c[s].test_ld) for s in seeds}
    fg = {s: v.f_stat(s, g[s].test_ld) for s in seeds}
    # A share of a near-zero F is noise (a ratio of two small numbers): shown only where greedy's
    # circuit reaches SHARE_MIN_F in every seed; the F columns stay.
    if min(fg[s][0] for s in seeds) >= SHARE_MIN_F:
        est, lo, hi = interval(v.boot, {s: paired(fm[s], fg[s], np.divide) for s in seeds})
    else:
        est = lo = hi = float("nan")
    return {"task": v.task, "target": t, "method": m, "k": int(np.median([g[s].size_nodes for s in seeds])),
            "F": float(np.mean([fm[s][0] for s in seeds])), "F_greedy": float(np.mean([fg[s][0] for s in seeds])),
            "share": est, "lo": lo, "hi": hi, "n_seeds": len(seeds), "interval": interval_kind(len(seeds)),
            "pool_size": min(pool.get(s, GREEDY_POOL) for s in seeds)}


def _pool_sizes(costs: pd.DataFrame, task: str) -> dict[int, int]:
    """seed -> greedy's pool size on ``task``, from its ``diag_pool_size`` rows (absent: empty)."""
    if costs.empty or "diag_pool_size" not in costs:
        return {}
    d = costs[(costs.task == task) & (costs.method == GREEDY)].dropna(subset=["diag_pool_size"])
    return {int(r.seed): int(r.diag_pool_size) for r in d.itertuples()}


def _curve(v: TaskView, method: str, seed: int) -> pd.DataFrame:
    d = v.c[(v.c.method == method) & (v.c.seed == seed)]
    kind = "native" if (d.kind == "native").any() else "cut"
    return d[d.kind == kind].sort_values("size_nodes").drop_duplicates("size_nodes")


def level_sizes(views: list[TaskView], levels=LEVELS, n_boot: int = 500) -> pd.DataFrame:
    """Nodes needed for F ≥ level, interpolated in log(size) between evaluated sizes (``crossing_size``), ± 95% CI.

    Rankings use their cut circuits (grid and matched sizes); a circuits-method its own circuits.
    A seed whose curve never reaches the level counts as "not reached" (NaN) and the share of
    replicates that reached it is reported.
    """
    rows = []
    for v in views:
        for m in v.methods:
            for level in levels:
                per = {}
                for s in v.seeds:
                    cur = _curve(v, m, s)
                    if cur.empty:
                        continue
                    sizes = cur.size_nodes.to_numpy(float)
                    lds = np.stack(cur.test_ld.to_list())  # [C, n]
                    r = v.ref.loc[s]
                    idx = v.boot.idx[s][:n_boot]
                    def f_of(ld_means, e, sa):
                        return (ld_means - e) / (sa - e)
                    point = f_of(lds.mean(1), r["m_empty"].mean(), r["m_sae"].mean())
                    reps = f_of(lds[:, idx].mean(2).T, r["m_empty"][idx].mean(1)[:, None], r["m_sae"][idx].mean(1)[:, None])
                    per[s] = (crossing_size(sizes, point, level), np.array([crossing_size(sizes, row, level) for row in reps]))
                if not per:
                    continue
                point = np.mean([p[0] for p in per.values()])
                stacked = np.stack([p[1] for p in per.values()], axis=1)
                reached = float(np.isfinite(stacked).all(1).mean())
                reps = stacked.mean(1)
                reps = reps[np.isfinite(reps)]
                lo, hi = (np.quantile(reps, [0.025, 0.975]) if len(reps) else (np.nan, np.nan))
                rows.append({"task": v.task, "method": m, "level": level, "nodes": point, "lo": lo, "hi": hi,
                             "reached_share": reached})
    return pd.DataFrame(rows)


def area_vs_random(views: list[TaskView]) -> pd.DataFrame:
    """Mean F over the shared grid sizes (cut circuits), and the same normalised against random.

    ``area`` = mean of F_test over the grid sizes 1…N (log-spaced). ``area_vs_random`` =
    (area − area_random) / (1 − area_random): 0 = no better than a random ranking, 1 = F = 1 at
    every size (ideal). Per seed, paired with the random baseline on the same prompts, then
    averaged over seeds with the seed-level interval (:func:`bench.eval.stats.interval`). In the
    spirit of MIB's CPR and auto-circuit's area-vs-random; unlike CPR, F is not clipped.
    """
    rows = []
    for v in views:
        if RANDOM not in v.methods:
            continue
        for m in v.methods:
            per_area, per_norm = {}, {}
            for s in v.seeds:
                dm = v.c[(v.c.method == m) & (v.c.seed == s) & (v.c.kind == "cut") & v.c.grid].sort_values("size_nodes")
                dr = v.c[(v.c.method == RANDOM) & (v.c.seed == s) & (v.c.kind == "cut") & v.c.grid].sort_values("size_nodes")
                common = sorted(set(dm.size_nodes) & set(dr.size_nodes))
                if not common:
                    continue
                fm = [v.f_stat(s, dm[dm.size_nodes == k].test_ld.iloc[0]) for k in common]
                fr = [v.f_stat(s, dr[dr.size_nodes == k].test_ld.iloc[0]) for k in common]
                am = (float(np.mean([f[0] for f in fm])), np.mean([f[1] for f in fm], axis=0))
                ar = (float(np.mean([f[0] for f in fr])), np.mean([f[1] for f in fr], axis=0))
                per_area[s] = am
                per_norm[s] = paired(am, ar, lambda x, y: (x - y) / (1 - y))
            if not per_area:
                continue
            a = interval(v.boot, per_area)
            n = interval(v.boot, per_norm)
            rows.append({"task": v.task, "method": m, "area": a[0], "area_lo": a[1], "area_hi": a[2],
                         "vs_random": n[0], "lo": n[1], "hi": n[2]})
    return pd.DataFrame(rows)


def train_test(views: list[TaskView]) -> pd.DataFrame:
    """Generalisation: F on train and test of the studied circuit (chosen on train) and the mean
    gap over all of the method's circuits with F_train ≥ 0.5 (where the gap is meaningful)."""
    rows = []
    for v in views:
        for m in v.methods:
            d = v.c[v.c.method == m]
            st = d[d.studied]
            use = d[d.F_train >= 0.5]
            rows.append({"task": v.task, "method": m,
                         "studied_nodes": float(st.size_nodes.mean()) if len(st) else np.nan,
                         "studied_F_train": float(st.F_train.mean()) if len(st) else np.nan,
                         "studied_F_test": float(st.F_test.mean()) if len(st) else np.nan,
                         "studied_gap": float((st.F_train - st.F_test).mean()) if len(st) else np.nan,
                         "mean_gap": float((use.F_train - use.F_test).mean()) if len(use) else np.nan})
    return pd.DataFrame(rows)


def knockout_gaps(df: pd.DataFrame, circ: pd.DataFrame) -> pd.DataFrame:
    """Mean F(M \\ K) − F(C \\ K) over knockout samples, per task, method and matched target
    (0 on y = x: the circuit is as hurt by losing K as the model is)."""
    d = tables.ok_rows(df)
    k = d[d.metric.isin(["knockout_model", "knockout_circuit"])]
    if k.empty:
        return pd.DataFrame()
    w = k.pivot_table(index=["task", "seed", "method", "circuit", "sample"], columns="metric", values="value").reset_index()
    w["gap"] = w.knockout_model - w.knockout_circuit
    g = w.groupby(["task", "seed", "method", "circuit"]).gap.mean().reset_index()
    g = g.merge(circ[["task", "seed", "method", "circuit", "targets", "studied", "size_nodes"]], on=["task", "seed", "method", "circuit"])
    rows = []
    for (task, method), gg in g.groupby(["task", "method"]):
        for t in sorted({x for ts in gg.targets for x in ts}):
            sel = gg[gg.targets.map(lambda ts, t=t: t in ts)]
            rows.append({"task": task, "method": method, "target": t, "knockout_gap": float(sel.gap.mean())})
        st = gg[gg.studied]
        if len(st):
            rows.append({"task": task, "method": method, "target": "studied", "knockout_gap": float(st.gap.mean())})
    return pd.DataFrame(rows)


def _latent_sets(df: pd.DataFrame) -> dict:
    d = tables.ok_rows(df)
    d = d[d.metric == "circuit_node"]
    out = {}
    for key, g in d.groupby(["task", "seed", "method", "circuit"]):
        out[key] = set(zip(g.site, g.latent))
    return out


def stability(df: pd.DataFrame, circ: pd.DataFrame) -> pd.DataFrame:
    """Jaccard of latent sets at each matched target: across seeds (same method) and between
    methods (same seed; against the reference method). Latents are (site, latent) pairs."""
    sets = _latent_sets(df)
    rows = []
    tgt = circ[circ.targets.map(len) > 0]
    for (task, method), g in tgt.groupby(["task", "method"]):
        for t in sorted({x for ts in g.targets for x in ts}):
            sel = g[g.targets.map(lambda ts, t=t: t in ts)]
            per_seed = {int(r.seed): sets.get((task, r.seed, method, r.circuit), set()) for _, r in sel.iterrows()}
            jac = [_jaccard(per_seed[a], per_seed[b]) for a, b in itertools.combinations(sorted(per_seed), 2)]
            ref = tgt[(tgt.task == task) & (tgt.method == REFERENCE_METHOD) & tgt.targets.map(lambda ts, t=t: t in ts)]
            iou = []
            for _, r in ref.iterrows():
                if int(r.seed) in per_seed and method != REFERENCE_METHOD:
                    iou.append(_jaccard(per_seed[int(r.seed)], sets.get((task, r.seed, REFERENCE_METHOD, r.circuit), set())))
            rows.append({"task": task, "method": method, "target": t,
                         "jaccard_across_seeds": float(np.mean(jac)) if jac else np.nan,
                         "iou_with_mask": float(np.mean(iou)) if iou else np.nan})
    return pd.DataFrame(rows)


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if (a or b) else math.nan


def nestedness(df: pd.DataFrame) -> pd.DataFrame:
    d = tables.ok_rows(df)
    d = d[d.metric.isin(["nestedness_node_next", "nestedness_latent_min", "nestedness_latent_mean"])]
    if d.empty:
        return pd.DataFrame()
    return d.groupby(["task", "method", "metric"]).value.mean().unstack("metric").reset_index()


def site_breakdown(df: pd.DataFrame, circ: pd.DataFrame) -> pd.DataFrame:
    """Nodes and distinct latents per SAE of each method's studied circuit (mean over seeds)."""
    d = tables.ok_rows(df)
    d = d[d.metric.isin(["site_nodes", "site_latents"])]
    st = circ[circ.studied][["task", "seed", "method", "circuit"]]
    d = d.merge(st, on=["task", "seed", "method", "circuit"])
    if d.empty:
        return pd.DataFrame()
    return d.groupby(["task", "method", "site", "metric"]).value.mean().unstack("metric").reset_index()


EDGE_REFERENCE = "edge_mask"  # the edge verdict compares every edge method against the edge mask


def edge_tables(df: pd.DataFrame, ref: pd.DataFrame, n_boot: int = 2000) -> dict[str, pd.DataFrame]:
    """The edge verdict: matched edge counts with intervals, paired differences against the edge mask,
    train vs test, and each task and seed's edge universe (nodes, candidate edges, the node circuit's
    train F, and its test F = the cut that keeps every candidate edge). Empty tables without edge rows."""
    circ = tables.circuits(df, "edges")
    names = ("edge_matched", "edge_pairwise", "edge_train_test", "edge_universe")
    if circ.empty or ref.empty:
        return {**{n: pd.DataFrame() for n in names}, "edge_circuits": circ}
    views = [TaskView(circ, ref, t, n_boot) for t in sorted(circ.task.unique())]
    return {"edge_matched": matched_table(views), "edge_pairwise": pairwise(views, reference=EDGE_REFERENCE),
            "edge_train_test": train_test(views), "edge_universe": edge_universe_table(df, circ), "edge_circuits": circ}


def edge_universe_table(df: pd.DataFrame, circ: pd.DataFrame) -> pd.DataFrame:
    """Per task and seed: the edge universe's nodes and candidate edges, the node circuit's train F
    (from its rows) and test F (every candidate edge kept: the largest cut of any edge ranking)."""
    d = tables.ok_rows(df)
    d = d[d.metric.isin(["edge_universe_nodes", "edge_universe_edges", "edge_universe_train_F"])]
    if d.empty:
        return pd.DataFrame()
    u = d.groupby(["task", "seed", "metric"]).value.first().unstack("metric").reset_index()
    u["source"] = [d[(d.task == r.task) & (d.seed == r.seed)].text.iloc[0] for r in u.itertuples()]
    # every edge method of a task and seed must have worked on the same nodes (each cell rebuilds the universe)
    fp = tables.ok_rows(df)
    fp = fp[fp.metric == "edge_universe_fingerprint"].groupby(["task", "seed"]).text.nunique()
    u["same_universe"] = [bool(fp.get((r.task, r.seed), 1) == 1) for r in u.itertuples()]
    cuts = circ[circ.kind == "cut"]
    full = {(r.task, int(r.seed)): r.F_test for r in cuts.sort_values("size_nodes").groupby(["task", "seed"]).tail(1).itertuples()}
    u["edge_universe_test_F"] = [full.get((r.task, int(r.seed)), np.nan) for r in u.itertuples()]
    return u.rename(columns={"edge_universe_nodes": "nodes", "edge_universe_edges": "candidate_edges",
                             "edge_universe_train_F": "node_circuit_F_train", "edge_universe_test_F": "node_circuit_F_test"})


def build(df: pd.DataFrame, n_boot: int = 2000) -> dict[str, pd.DataFrame]:
    """Every table of the report."""
    circ = tables.circuits(df)
    ref = tables.references(df)
    empty = pd.DataFrame()
    if circ.empty or ref.empty:  # e.g. every cell failed, or edges only: costs, errors and the edge tables
        names = ("matched", "pairwise", "reference_share", "levels", "area", "train_test", "knockout", "stability",
                 "nestedness", "sites")
        return {**{n: empty for n in names}, "costs": tables.costs(df), "errors": tables.errors(df), "circuits": circ,
                "references": ref, "settings": tables.chosen_settings(df), **edge_tables(df, ref, n_boot)}
    views = [TaskView(circ, ref, t, n_boot) for t in sorted(circ.task.unique())]
    cost = tables.costs(df)
    return {
        "matched": matched_table(views), "pairwise": pairwise(views, costs=cost), "reference_share": reference_share(views, cost),
        "levels": level_sizes(views),
        "area": area_vs_random(views), "train_test": train_test(views), "knockout": knockout_gaps(df, circ),
        "stability": stability(df, circ), "nestedness": nestedness(df), "sites": site_breakdown(df, circ),
        "costs": cost, "errors": tables.errors(df), "circuits": circ, "references": ref,
        "settings": tables.chosen_settings(df), **edge_tables(df, ref, n_boot),
    }
