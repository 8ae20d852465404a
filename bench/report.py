"""The Markdown report, made from stored rows only (through :mod:`bench.verdict`).

Sections: setting; the headline (F at matched sizes with 95% intervals, and the paired verdict);
nodes needed for F ≥ 0.8 / 0.9 (interpolated); area against random; train vs test; completeness
and knockout; stability and nestedness; the studied circuits per SAE; cost; failed cells.
Every table is also written as CSV next to the report.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench import verdict

F_NAME = "F = (m(C) − m(∅)) / (m(M+SAE) − m(∅))"


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
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
        lines.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def ci(est, lo, hi, digits: int = 3) -> str:
    if est is None or not np.isfinite(est):
        return "–"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{est:.{digits}f}"
    return f"{est:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def headline_wide(matched: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, method), one column per matched target: "F [lo, hi] @k"."""
    if matched.empty:
        return matched
    rows = []
    for (task, method), g in matched.groupby(["task", "method"]):
        row = {"task": task, "method": method}
        for _, r in g.sort_values("target").iterrows():
            row[f"~{r.target} nodes"] = f"{ci(r.F, r.lo, r.hi, 2)} @{_fmt(r.sizes[0]) if len(set(r.sizes)) == 1 else '/'.join(map(str, r.sizes))}"
        rows.append(row)
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame, n_boot: int = 2000) -> dict[str, pd.DataFrame]:
    """Every report table (see :func:`bench.verdict.build`)."""
    return verdict.build(df, n_boot)


def _train_sizes(df: pd.DataFrame, cfg: dict) -> str:
    """The run's train size, with the tasks that used their own (from the rows' n_train column)."""
    base = cfg.get("n_train", "?")
    own = {}
    if "n_train" in df and "task" in df:
        for task, n in df.dropna(subset=["n_train"]).groupby("task").n_train.max().items():
            if n != base:
                own[task] = int(n)
    return f"{base}" + (" (" + ", ".join(f"{t}: {n}" for t, n in sorted(own.items())) + ")" if own else "")


def _test_sizes(df: pd.DataFrame, cfg: dict) -> str:
    """The configured test size, or the range the rows actually have (a split can hold one more
    prompt when records come in pairs)."""
    if "n_test" not in df or df.n_test.dropna().empty:
        return str(cfg.get("n_test", "?"))
    lo, hi = int(df.n_test.min()), int(df.n_test.max())
    return str(lo) if lo == hi else f"{lo}–{hi}"


def write_report(df: pd.DataFrame, results: Path, fig_dir: Path, n_boot: int = 2000) -> Path:
    results = Path(results)
    t = summary(df, n_boot)
    from bench import control_report

    controls, control_notes = control_report.load_controls(results, n_boot, df)
    ctrl_cmp, ctrl_sig = control_report.compare(t, controls) if controls else (pd.DataFrame(), pd.DataFrame())
    t["controls"], t["control_signal"] = ctrl_cmp, ctrl_sig
    flags = control_report.flags_for_pairwise(ctrl_cmp)
    from bench.results import read_run_json

    run = read_run_json(results)
    cfg = run.get("config", {})
    seeds = cfg.get("seeds", sorted(df.seed.unique().tolist()))
    lines = [
        "# SAE-latent circuit discovery: benchmark report", "",
        f"Preset `{cfg.get('preset', '?')}`, error policy `{cfg.get('error_policy', '?')}`, ablation "
        f"`{cfg.get('ablation', '?')}`, seeds {seeds} (a seed changes the data draw, the split and each method's "
        f"randomness), {_train_sizes(df, cfg)} train / {_test_sizes(df, cfg)} test prompts per task and seed. "
        "Methods see the train split only.", "",
        f"Faithfulness is the headline form {F_NAME} on the **held-out test split** unless a column says otherwise; "
        "m = mean logit difference, everything outside the circuit mean-ablated (the run's ablation). "
        "Intervals are 95% bootstrap intervals over test prompts and seeds"
        + (" (one seed: over prompts only, saying nothing about seed-to-seed variation)" if len(seeds) == 1 else "")
        + ".", "",
        *(["**No cell produced circuits: every cell failed. The reasons are under \"Failed cells\" below.**", ""]
          if t["circuits"].empty else []),
        "## Headline: F at matched sizes", "",
        "Every method is evaluated at exactly the sizes the learned mask produced on the same task and seed (its own "
        "circuits, one per λ); each column is the mask circuit nearest the named size, `@k` gives the sizes (per seed "
        "when they differ). Ranking methods are cut at exactly those k.", "",
        markdown_table(headline_wide(t["matched"])), "",
        "## Verdict: paired differences at matched sizes", "",
        "F(mask) − F(other) with a paired bootstrap over prompts and seeds. **beats**: the interval lies above 0; "
        "**loses**: below 0; **tied**: it contains 0; **saturated**: both mean F ≥ " f"{verdict.SATURATED}" ", where a "
        "difference is mostly overshoot above 1 rather than a smaller faithful circuit (shown, not counted; "
        "`verdict_interval` and the second tally give the interval's verdict alone). `sizes`: the mask circuit's "
        "size in seeds 0/1/2… (a wide spread widens the interval). activation_patching is the noising effect averaged "
        "over its first `diag_prompts_used` train prompts only (8 by default; every other method sees the whole "
        "train split), and its split-half reliability is in the cost table: where it is near 0 its verdicts say "
        "nothing about exact patching.", "",
    ]
    pw = t["pairwise"].copy()
    if not pw.empty:
        pw["F(mask) − F(other)"] = [ci(r["diff"], r.lo, r.hi) for _, r in pw.iterrows()]
        cols = ["task", "target", "sizes", "vs", "F_method", "F_vs", "F(mask) − F(other)", "verdict", "verdict_interval", "n_seeds"]
        if controls:
            pw["controls as good"] = [
                "; ".join(f"{who}: {', '.join(flags[(r.task, int(r.target), m)])}"
                          for who, m in (("mask", r.method), ("other", r.vs)) if (r.task, int(r.target), m) in flags) or "–"
                for _, r in pw.iterrows()]
            cols.append("controls as good")
        lines += [markdown_table(pw, cols), ""]
        if controls:
            lines += ["`controls as good`: the method (mask or other) reaches, on the named control, a test F inside "
                      "or above its real interval at this target with no more nodes (see Controls below). On `shuffled` "
                      "and `random` its F here is no evidence of a mechanism; on `basis` the raw residual coordinates "
                      "do as well as the SAE latents.", ""]
        counts = pw.groupby(["vs", "verdict"]).size().unstack(fill_value=0)
        raw = pw.groupby(["vs", "verdict_interval"]).size().unstack(fill_value=0)
        lines += ["Tally over tasks and matched sizes:", "", markdown_table(counts.reset_index()), "",
                  "The same, judged by the interval alone (saturated pairs included):", "",
                  markdown_table(raw.reset_index()), ""]
    if control_notes and not controls:
        lines += ["## Controls", ""] + [f"- {n}" for n in control_notes] + [""]
    if controls:
        cc = ctrl_cmp.copy()
        if not cc.empty:
            cc["F real"] = [ci(r.F_real, r.lo_real, r.hi_real, 2) for _, r in cc.iterrows()]
            cc["F control"] = [ci(r.F_control, r.lo_control, r.hi_control, 2) for _, r in cc.iterrows()]
        lines += ["## Controls", "",
                  "Runs where a faithful small circuit would be fitted noise (bench/controls.py; README \"Controls\"): "
                  "`shuffled` = the real model, each prompt's two answers borrowed from other prompts of its case (clean "
                  "answers absent from this prompt and not its own), ordered so that each prompt's LD(M+SAE) − LD(∅) is positive (the preference the latents carry); `random` = the same architecture with random weights and its own "
                  "SAEs, answers ordered the same way; `basis` = the real model and answers with the residual "
                  "coordinates as nodes (identity dictionary): there `control_as_good` means the raw basis is as "
                  "faithful as the SAE latents at the same node count. Test F at the same headline targets (each run's own matched "
                  "sizes `k`), the control's train F, and `control_as_good` where the control's F reaches the real "
                  "interval's lower end (an interval above 0) with no more nodes than the real circuit. `seeds`: the control's seeds, on "
                  "which the real run is re-summarised for the comparison. A `basis` node is half a "
                  "coordinate (its positive or negative part), so at equal node count the basis holds at most as "
                  "many coordinates as the SAE circuit holds latents: a handicap for the basis, so a `basis` flag is "
                  "strong evidence and its absence weaker.", "",
                  markdown_table(cc, ["control", "seeds", "task", "target", "method", "k_real", "k_control", "F real", "F control",
                                      "F_train_control", "control_as_good"]), "",
                  "Signal per run: m(M+SAE) − m(∅) on the test split (mean over seeds); near 0, a run has no behaviour "
                  "to explain.", "", markdown_table(ctrl_sig, ["run", "task", "m_sae", "signal"]), "",
                  *[f"- {n}" for n in control_notes], *([""] if control_notes else [])]
    lv = t["levels"].copy()
    if not lv.empty:
        lv["nodes for F ≥ level"] = [ci(r.nodes, r.lo, r.hi, 1) for _, r in lv.iterrows()]
        lines += ["## Nodes needed for a faithfulness level (secondary)", "",
                  "Interpolated linearly in log(size) between evaluated sizes (from an empty circuit: the first size "
                  "that reaches it; rankings: grid and matched sizes; the mask: "
                  "its own circuits), averaged over seeds, with a bootstrap interval. `reached_share`: the share of "
                  "replicates in which every seed reached the level.", "",
                  markdown_table(lv, ["task", "method", "level", "nodes for F ≥ level", "reached_share"]), ""]
    ar = t["area"].copy()
    if not ar.empty:
        ar["area"] = [ci(r.area, r.area_lo, r.area_hi) for _, r in ar.iterrows()]
        ar["area vs random"] = [ci(r.vs_random, r.lo, r.hi) for _, r in ar.iterrows()]
        lines += ["## Area against random", "",
                  "`area`: mean F over the shared log-spaced grid of sizes 1…N (N = every node), each method read as a "
                  "ranking (the mask through its λ sweep). `area vs random` = (area − area_random) / (1 − area_random): "
                  "0 is a random ranking, 1 is F = 1 at every size.", "",
                  markdown_table(ar, ["task", "method", "area", "area vs random"]), ""]
    tt = t["train_test"]
    lines += ["## Train vs test", "",
              "The studied circuit is chosen on **train** (smallest with F_train ≥ 0.9, else the most faithful on train). "
              "`mean_gap`: mean of F_train − F_test over the method's circuits with F_train ≥ 0.5.", "",
              markdown_table(tt), ""]
    mt = t["matched"]
    if not mt.empty:
        comp = mt.pivot_table(index=["task", "method"], columns="target", values="complement").reset_index()
        comp.columns = [c if isinstance(c, str) else f"F(M\\C) @~{c}" for c in comp.columns]
        lines += ["## Completeness at matched sizes", "",
                  "F(M \\ C): the model with the circuit's latents ablated at every position (0 = the circuit holds "
                  "everything that matters; lower is more complete).", "", markdown_table(comp), ""]
    ko = t["knockout"]
    if not ko.empty:
        kw = ko.pivot_table(index=["task", "method"], columns="target", values="knockout_gap", aggfunc="first").reset_index()
        kw.columns = [str(c) if c in ("task", "method", "studied") else f"@~{c}" for c in kw.columns]
        lines += ["## Knockout", "",
                  "Mean of F(M \\ K) − F(C \\ K) over random subsets K of the circuit's latents (each latent in K with "
                  "probability 0.5, removed at every position, as in the paper). 0: the circuit is hurt exactly as "
                  "much as the model (y = x); positive: the circuit relies on latents the model can do without. "
                  f"{cfg.get('n_knockout', '?')} subsets per circuit, each scored on the first "
                  f"{cfg.get('n_knockout_prompts', '?')} test prompts with baselines on the same prompts.", "",
                  markdown_table(kw), ""]
    st = t["stability"]
    if not st.empty:
        lines += ["## Stability", "",
                  "Jaccard of the circuits' latent sets ((site, latent) pairs) at each matched size: across seeds "
                  "(same method; seeds differ in data and randomness) and with the mask's circuit (same seed).", "",
                  markdown_table(st), ""]
    ne = t["nestedness"]
    if not ne.empty:
        lines += ["## Nestedness of the λ sweep", "",
                  "`nestedness_node_next`: share of a circuit's nodes inside the next larger one. `nestedness_latent_min` "
                  "/ `_mean`: share of its latents inside each larger circuit, the minimum / mean over them (the paper's "
                  "measure, ≥ 0.99 there).", "", markdown_table(ne), ""]
    si = t["sites"]
    if not si.empty:
        lines += ["## Studied circuits per SAE", "", "Nodes and distinct latents per SAE (mean over seeds).", "",
                  markdown_table(si), ""]
    co = t["costs"]
    if not co.empty:
        cols = [c for c in ["wall_seconds", "forward_prompts", "backward_prompts", "forward_model_fraction",
                            "peak_memory_mb", "diag_prompts_used", "diag_split_half_r"] if c in co]
        cm = co.groupby(["task", "method"])[cols].mean().reset_index()
        lines += ["## Cost of discovery (mean over seeds)", "",
                  "One method run on one task and seed (the mask: its whole λ sweep). `forward/backward_prompts`: "
                  "prompts through the model; `peak_memory_mb`: see the memory note in the README. "
                  "`diag_split_half_r` (activation patching): correlation of node scores from the two halves of its "
                  "prompts; activation patching is a noising effect on `diag_prompts_used` train prompts only.", "",
                  markdown_table(cm), ""]
    er = t["errors"]
    if not er.empty:
        lines += ["## Failed cells", ""] + [f"- {r.task} / seed {r.seed} / {r.method}: {r.error}" for _, r in er.iterrows()] + [""]
    figs = sorted(p.name for p in Path(fig_dir).glob("*.png")) if Path(fig_dir).is_dir() else []
    if figs:
        fd, rd = Path(fig_dir).resolve(), results.resolve()
        rel = fd.relative_to(rd) if fd.is_relative_to(rd) else fd
        lines += ["## Figures", ""] + [f"![{f}]({rel / f})" for f in figs] + [""]
    path = results / "report.md"
    path.write_text("\n".join(lines))
    for name in ("matched", "pairwise", "levels", "area", "train_test", "knockout", "stability", "nestedness", "sites",
                 "controls", "control_signal"):
        if not t[name].empty:
            t[name].to_csv(results / f"summary_{name}.csv", index=False)
    return path
