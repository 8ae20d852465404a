"""The report's sections, in order: each a function from the run's tables to Markdown lines.

Add a section by writing a function ``(ReportContext) -> list[str]`` and placing it in
:data:`SECTIONS` (as a figure is added to ``figures.registry``). A section reads only the tables
built from stored rows (:func:`bench.eval.verdict.build`), the run's settings and its controls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.eval import verdict
from bench.eval.stats import ONE_SEED
from bench.report.markdown import F_NAME, ci, headline_wide, markdown_table


@dataclass
class ReportContext:
    """What every section may read."""

    df: pd.DataFrame  # the run's rows
    tables: dict[str, pd.DataFrame]  # bench.eval.verdict.build, plus the controls' tables
    cfg: dict  # run.json's config
    seeds: list
    results: Path
    fig_dir: Path
    controls: dict = field(default_factory=dict)
    control_notes: list[str] = field(default_factory=list)
    ctrl_cmp: pd.DataFrame = field(default_factory=pd.DataFrame)
    ctrl_sig: pd.DataFrame = field(default_factory=pd.DataFrame)
    flags: dict = field(default_factory=dict)


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


def setting(c: ReportContext) -> list[str]:
    """Title, the run's setting, what F and the intervals are."""
    t, cfg, seeds, df = c.tables, c.cfg, c.seeds, c.df
    return [
        "# SAE-latent circuit discovery: benchmark report", "",
        f"Preset `{cfg.get('preset', '?')}`, error policy `{cfg.get('error_policy', '?')}`, ablation "
        f"`{cfg.get('ablation', '?')}`, seeds {seeds} (a seed changes the data draw, the split and each method's "
        f"randomness), {_train_sizes(df, cfg)} train / {_test_sizes(df, cfg)} test prompts per task and seed. "
        "Methods see the train split only.", "",
        f"Faithfulness is the headline form {F_NAME} on the **held-out test split** unless a column says otherwise; "
        "m = mean logit difference, everything outside the circuit mean-ablated (the run's ablation). "
        "Intervals are 95% Student-t intervals over seeds: a statistic is computed per seed on its test prompts, "
        "then mean ± t·sd/√S over the S seeds (the seed is what varies: data draw, split, method randomness); "
        "the nodes needed for a level keep a bootstrap over test prompts and seeds"
        + (f". **{ONE_SEED}**: with one seed every interval is a bootstrap over test prompts, saying nothing "
           "about seed-to-seed variation" if len(seeds) == 1 else "")
        + ".", "",
        *(["**No cell produced circuits: every cell failed. The reasons are under \"Failed cells\" below.**", ""]
          if t["circuits"].empty and t.get("edge_circuits", pd.DataFrame()).empty else []),
    ]


def _edges_only(t: dict) -> bool:
    """A run of edge methods only: the node sections have nothing to say."""
    return t["circuits"].empty and not t.get("edge_circuits", pd.DataFrame()).empty


def headline(c: ReportContext) -> list[str]:
    """F at matched sizes, one column per headline target."""
    t = c.tables
    if _edges_only(t):
        return []
    return [
        "## Headline: F at matched sizes", "",
        "Every method is evaluated at exactly the sizes the learned mask produced on the same task and seed (its own "
        "circuits, one per λ); each column is the mask circuit nearest the named size, `@k` gives the sizes (per seed "
        "when they differ). Ranking methods are cut at exactly those k.", "",
        markdown_table(headline_wide(t["matched"])), "",
    ]


def verdict_section(c: ReportContext) -> list[str]:
    """The paired verdict of the mask against every other method, and its tally (references left out)."""
    t, controls, flags = c.tables, c.controls, c.flags
    if _edges_only(t):
        return []
    lines = [
        "## Verdict: paired differences at matched sizes", "",
        "F(mask) − F(other) per seed, both scored on that seed's test prompts, averaged over seeds with a 95% "
        "Student-t interval over the seeds' differences (a comparison with one seed has a bootstrap over its test "
        f"prompts instead, and its `interval` says \"{ONE_SEED}\"). **beats**: the interval lies above 0; "
        "**loses**: below 0; **tied**: it contains 0; "
        f"**saturated**: in every seed both F ≥ {verdict.SATURATED} (`F_method_min`, `F_vs_min`: the lowest seed's F), "
        "where a difference is mostly overshoot above 1 rather than a smaller faithful circuit (shown, not counted; "
        "`verdict_interval` and the second tally give the interval's verdict alone). `signs`: in how many seeds "
        "the mask's F is the higher. `sizes`: the mask circuit's size in seeds 0/1/2… (a wide spread widens the "
        "interval).", "",
    ]
    pw = t["pairwise"].copy()
    if pw.empty:
        return lines
    lines += _out_of_tally(pw)
    pw["F(mask) − F(other)"] = [ci(r["diff"], r.lo, r.hi) for _, r in pw.iterrows()]
    cols = ["task", "target", "sizes", "vs", "F_method", "F_vs", "F_method_min", "F_vs_min", "F(mask) − F(other)",
            "signs", "verdict", "verdict_interval", "in_tally"] + (["interval"] if (pw.interval == ONE_SEED).any() else [])
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
    return lines + _tally(pw[pw.in_tally])


def _out_of_tally(pw: pd.DataFrame) -> list[str]:
    """Why each reference method in the table is left out of the tally."""
    refs = [m for m in verdict.REFERENCES if m in set(pw.vs) | set(pw.method)]
    if not refs:
        return []
    return (["Left out of the tally (`in_tally` False), shown for reference:", ""]
            + [f"- `{m}`: {verdict.REFERENCES[m]}" for m in refs] + [""])


def _tally(pw: pd.DataFrame) -> list[str]:
    """Counts of each verdict per rival, and the same judged by the interval alone."""
    if pw.empty:
        return ["No comparison is in the tally (every compared method is a reference).", ""]
    counts = pw.groupby(["vs", "verdict"]).size().unstack(fill_value=0)
    raw = pw.groupby(["vs", "verdict_interval"]).size().unstack(fill_value=0)
    return ["Tally over tasks and matched sizes (references left out):", "", markdown_table(counts.reset_index()), "",
            "The same, judged by the interval alone (saturated pairs included):", "",
            markdown_table(raw.reset_index()), ""]


def reference_share(c: ReportContext) -> list[str]:
    """Each method's F as a share of the greedy reference's, at matched sizes within greedy's pool."""
    rs = c.tables.get("reference_share", pd.DataFrame()).copy()
    if rs.empty:
        ran = set(c.df.method.dropna().unique()) if "method" in c.df else set()
        missing = sorted(set(verdict.REFERENCES) - ran)
        if missing:  # e.g. a --quick run, which leaves the references out (bench.run.config.QUICK_METHODS)
            return ["## References", "", f"Not run: {', '.join(missing)} (a `--quick` run leaves the references "
                    "out; add them with `--methods`), so no method's F is shown as a share of the greedy reference's.", ""]
        return []
    rs["F / F(greedy)"] = [ci(r.share, r.lo, r.hi) for _, r in rs.iterrows()]
    return ["## Share of the best circuit found (greedy reference)", "",
            "How far each method is from the best circuit the reference found: per seed F_test(method) / "
            "F_test(greedy) at the same matched size, then the mean over seeds with its 95% interval (as the "
            "verdict's). greedy is a search on the train split (backward elimination over a pool of `pool_size` "
            "nodes), so only sizes within its pool are shown. 1: as faithful as greedy's circuit; above 1: more "
            "(greedy's circuit is a good circuit found on train, not the best possible on test). Where greedy's F "
            f"is below {verdict.SHARE_MIN_F} in some seed the ratio is noise and shown as –.", "",
            markdown_table(rs, ["task", "target", "method", "k", "F", "F_greedy", "F / F(greedy)", "n_seeds",
                                "pool_size"]), ""]


def chosen_settings(c: ReportContext) -> list[str]:
    """The settings each method got on the train split, so a reader sees no method ran at a default
    that handicapped it."""
    st = c.tables.get("settings", pd.DataFrame())
    if st.empty:
        return []
    cols = [k for k in ("task", "method", "n_seeds", "cut_rule", "train_F_abs", "train_F_positive", "steps",
                        "steps_state", "restart_lr") if k in st.columns]
    return ["## Settings chosen on the train split", "",
            "Every ranking is cut by the rule with the higher mean train F over the shared size grid: `abs` "
            "(largest |score| first) or `positive` (largest signed score first, nodes against the answer last); "
            "`cut_rule` counts the seeds that chose each (a ranking with no negative score is cut by `abs`, the "
            "rules being the same), and `train_F_*` is each rule's mean train F. The mask's `steps` counts the "
            "schedules its step ladder settled on, one per lambda and seed (`steps_state`: converged, stopped at "
            "max_steps, or repaired: an empty circuit retrained lower at its lambda's schedule), "
            "and `restart_lr` counts the learning rates of the restarts chosen over all its lambdas "
            "(`methods/binary_mask.py`, Restarts and Steps).", "",
            markdown_table(st, cols), ""]


def control_runs(c: ReportContext) -> list[str]:
    """Real vs control runs (shuffled answers, random weights, residual basis), or why none are shown."""
    controls, control_notes, ctrl_cmp, ctrl_sig = c.controls, c.control_notes, c.ctrl_cmp, c.ctrl_sig
    lines: list[str] = []
    if control_notes and not controls:
        lines += ["## Controls", ""] + [f"- {n}" for n in control_notes] + [""]
    if controls:
        cc = ctrl_cmp.copy()
        if not cc.empty:
            cc["F real"] = [ci(r.F_real, r.lo_real, r.hi_real, 2) for _, r in cc.iterrows()]
            cc["F control"] = [ci(r.F_control, r.lo_control, r.hi_control, 2) for _, r in cc.iterrows()]
        lines += ["## Controls", "",
                  "Runs where a faithful small circuit would be fitted noise (bench/run/controls.py; README \"Controls\"): "
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
    return lines


def levels(c: ReportContext) -> list[str]:
    """Nodes needed for a faithfulness level."""
    t = c.tables
    lines: list[str] = []
    lv = t["levels"].copy()
    if not lv.empty:
        lv["nodes for F ≥ level"] = [ci(r.nodes, r.lo, r.hi, 1) for _, r in lv.iterrows()]
        lines += ["## Nodes needed for a faithfulness level (secondary)", "",
                  "Interpolated linearly in log(size) between evaluated sizes (from an empty circuit: the first size "
                  "that reaches it; rankings: grid and matched sizes; the mask: "
                  "its own circuits), averaged over seeds, with a bootstrap interval. `reached_share`: the share of "
                  "replicates in which every seed reached the level.", "",
                  markdown_table(lv, ["task", "method", "level", "nodes for F ≥ level", "reached_share"]), ""]
    return lines


def area(c: ReportContext) -> list[str]:
    """Area under F over the shared grid, against random."""
    t = c.tables
    lines: list[str] = []
    ar = t["area"].copy()
    if not ar.empty:
        ar["area"] = [ci(r.area, r.area_lo, r.area_hi) for _, r in ar.iterrows()]
        ar["area vs random"] = [ci(r.vs_random, r.lo, r.hi) for _, r in ar.iterrows()]
        lines += ["## Area against random", "",
                  "`area`: mean F over the shared log-spaced grid of sizes 1…N (N = every node), each method read as a "
                  "ranking (the mask through its λ sweep). `area vs random` = (area − area_random) / (1 − area_random): "
                  "0 is a random ranking, 1 is F = 1 at every size.", "",
                  markdown_table(ar, ["task", "method", "area", "area vs random"]), ""]
    return lines


def train_test(c: ReportContext) -> list[str]:
    """Train vs test F of every method's circuits."""
    t = c.tables
    lines: list[str] = []
    tt = t["train_test"]
    lines += ["## Train vs test", "",
              "The studied circuit is chosen on **train** (smallest with F_train ≥ 0.9, else the most faithful on train). "
              "`mean_gap`: mean of F_train − F_test over the method's circuits with F_train ≥ 0.5.", "",
              markdown_table(tt), ""]
    return lines


def completeness(c: ReportContext) -> list[str]:
    """F of the model without the circuit, at matched sizes."""
    t = c.tables
    lines: list[str] = []
    mt = t["matched"]
    if not mt.empty:
        comp = mt.pivot_table(index=["task", "method"], columns="target", values="complement").reset_index()
        comp.columns = [c if isinstance(c, str) else f"F(M\\C) @~{c}" for c in comp.columns]
        lines += ["## Completeness at matched sizes", "",
                  "F(M \\ C): the model with the circuit's latents ablated at every position (0 = the circuit holds "
                  "everything that matters; lower is more complete).", "", markdown_table(comp), ""]
    return lines


def knockout(c: ReportContext) -> list[str]:
    """Random subsets of the circuit knocked out of the circuit and of the model."""
    t, cfg = c.tables, c.cfg
    lines: list[str] = []
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
    return lines


def stability(c: ReportContext) -> list[str]:
    """Jaccard of circuits across seeds and with the mask's."""
    t = c.tables
    lines: list[str] = []
    st = t["stability"]
    if not st.empty:
        lines += ["## Stability", "",
                  "Jaccard of the circuits' latent sets ((site, latent) pairs) at each matched size: across seeds "
                  "(same method; seeds differ in data and randomness) and with the mask's circuit (same seed).", "",
                  markdown_table(st), ""]
    return lines


def nestedness(c: ReportContext) -> list[str]:
    """Nestedness of the mask's λ sweep."""
    t = c.tables
    lines: list[str] = []
    ne = t["nestedness"]
    if not ne.empty:
        lines += ["## Nestedness of the λ sweep", "",
                  "`nestedness_node_next`: share of a circuit's nodes inside the next larger one. `nestedness_latent_min` "
                  "/ `_mean`: share of its latents inside each larger circuit, the minimum / mean over them (the paper's "
                  "measure, ≥ 0.99 there).", "", markdown_table(ne), ""]
    return lines


def sites(c: ReportContext) -> list[str]:
    """The studied circuits' nodes and latents per SAE."""
    t = c.tables
    lines: list[str] = []
    si = t["sites"]
    if not si.empty:
        lines += ["## Studied circuits per SAE", "", "Nodes and distinct latents per SAE (mean over seeds).", "",
                  markdown_table(si), ""]
    return lines


def costs(c: ReportContext) -> list[str]:
    """Cost of discovery per method."""
    t = c.tables
    lines: list[str] = []
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
    return lines


def failures(c: ReportContext) -> list[str]:
    """Every failed cell with its reason."""
    t = c.tables
    lines: list[str] = []
    er = t["errors"]
    if not er.empty:
        lines += ["## Failed cells", ""] + [f"- {r.task} / seed {r.seed} / {r.method}: {r.error}" for _, r in er.iterrows()] + [""]
    return lines


def figures(c: ReportContext) -> list[str]:
    """Links to the figures drawn for this run."""
    results, fig_dir = c.results, c.fig_dir
    lines: list[str] = []
    figs = sorted(p.name for p in Path(fig_dir).glob("*.png")) if Path(fig_dir).is_dir() else []
    if figs:
        fd, rd = Path(fig_dir).resolve(), results.resolve()
        rel = fd.relative_to(rd) if fd.is_relative_to(rd) else fd
        lines += ["## Figures", ""] + [f"![{f}]({rel / f})" for f in figs] + [""]
    return lines


def edges(c: ReportContext) -> list[str]:
    """The edge verdict (edge methods at matched edge counts), when the run has edge methods."""
    t = c.tables
    if t.get("edge_universe", pd.DataFrame()).empty:
        return []
    lines = [
        "## Edges between latents", "",
        "Edge methods keep edges between the nodes of one node circuit per task and seed, the same for every edge "
        "method (the *edge universe*: the ranking of the node method named below, cut by its train-chosen rule at the "
        "smallest grid size with train F ≥ 0.9, capped; `bench/run/edge_universe.py`). A node reads, through the "
        "blocks between two SAE sites, only what its kept in-edges carry (exact semantics: `docs/edges.md`). F is "
        "normalised as for nodes, so keeping every candidate edge gives the node circuit's F (`node_circuit_F_test`), "
        "the most an edge circuit can reach here.", "",
        markdown_table(t["edge_universe"], ["task", "seed", "source", "nodes", "candidate_edges", "node_circuit_F_train",
                                            "node_circuit_F_test", "same_universe"]), "",
        "F at matched edge counts (each column: the edge mask's circuit nearest the named count, or the nearest grid "
        "count when no edge mask ran; rankings are cut at exactly those counts), test split, 95% interval over seeds:", "",
        markdown_table(headline_wide(t["edge_matched"], "edges")), "",
    ]
    em = t["edge_matched"]
    if not em.empty:
        comp = em.copy()
        lines += ["Completeness at the same counts: F of the complement (every candidate edge except the circuit's; "
                  "lower is more complete), mean over seeds:", "",
                  markdown_table(comp, ["task", "target", "method", "k", "complement", "F_train", "n_seeds"]), ""]
    pw = t["edge_pairwise"].copy()
    if not pw.empty:
        ref = pw.method.iloc[0]
        col = f"F({ref}) − F(other)"
        pw[col] = [ci(r["diff"], r.lo, r.hi) for _, r in pw.iterrows()]
        lines += [f"Paired differences against `{ref}` (the node verdict's rule: Student t over seeds; one seed: "
                  "prompt bootstrap):", "",
                  markdown_table(pw, ["task", "target", "sizes", "vs", "F_method", "F_vs", col, "signs", "verdict",
                                      "interval"]), ""]
    tt = t.get("edge_train_test", pd.DataFrame())
    if not tt.empty:
        lines += ["Train vs test of the studied edge circuit (chosen on train: the smallest reaching 90% of the node "
                  "circuit's train F; `studied_nodes` here counts its edges):", "", markdown_table(tt), ""]
    return lines


SECTIONS = (setting, headline, verdict_section, reference_share, chosen_settings, control_runs, levels, area, train_test, completeness,
            knockout, stability, nestedness, sites, edges, costs, failures, figures)
