"""Wide views of the long results table: the one place the report and the figures pivot rows.

* :func:`circuits` — one row per (task, seed, method, circuit): kind, sizes, every faithfulness
  form on test and train, complement faithfulness, whether the circuit is on the shared grid, the
  matched-size target it stands for (if any), whether it is the studied circuit, and the test
  split's per-prompt logit differences (for bootstrap intervals).
* :func:`references` — one row per (task, seed): the baselines' per-prompt test values.
* :func:`costs` — one row per (task, seed, method): the cost metrics and diagnostics.
* :func:`chosen_settings` — one row per (task, method): the settings chosen on train (cut rule,
  the mask's schedule and restarts).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bench.eval.evaluate import F_FORMS, HEADLINE

REFERENCE = "(reference)"
KEYS = ["task", "seed", "method", "circuit"]


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"]


def circuits(df: pd.DataFrame, unit: str = "nodes") -> pd.DataFrame:
    """The wide view of node circuits, or (``unit="edges"``) of edge circuits.

    The verdict's machinery reads one size column, ``size_nodes``: in an edge view it holds the
    circuit's **edge** count (also in ``size_edges``), and ``size_latents`` the nodes its edges touch."""
    d = ok_rows(df)
    d = d[(d.circuit >= 0) & (d.method != REFERENCE)]
    size_metric = f"size_{unit}"
    if d.empty or not (d.metric == size_metric).any():
        return pd.DataFrame(columns=KEYS + ["kind", "size_nodes", "size_latents", "F_test", "F_train"])
    if unit == "edges":
        d = d[d.size_unit == "edges"]
    elif "size_unit" in d:
        d = d[d.size_unit.fillna("nodes") == "nodes"]
    base = d[(d.metric == size_metric)][KEYS + ["circuit_kind", "circuit_params", "value"]].rename(
        columns={"circuit_kind": "kind", "value": "size_nodes"})
    base["grid"] = [bool(json.loads(p).get("grid", False)) for p in base.circuit_params]
    base = base.drop(columns="circuit_params")
    wide = base.set_index(KEYS)
    latents = "size_nodes_touched" if unit == "edges" else "size_latents"
    if unit == "edges":
        wide["size_edges"] = wide["size_nodes"]
    for metric, split, col in [(latents, "test", "size_latents"), ("complement_logit_diff", "test", "complement_ld_mean")]:
        s = d[(d.metric == metric) & (d.split == split)].set_index(KEYS)["value"]
        wide[col] = s
    for form in F_FORMS:
        for split in ("test", "train"):
            s = d[(d.metric == form) & (d.split == split)].set_index(KEYS)["value"]
            wide[f"{form}_{split}"] = s
    wide["F_test"] = wide[f"{HEADLINE}_test"]
    wide["F_train"] = wide[f"{HEADLINE}_train"]
    ld = d[(d.metric == "logit_diff") & (d.split == "test")].set_index(KEYS)["per_prompt"]
    wide["test_ld"] = ld.map(lambda v: np.asarray(v, dtype=float))
    comp = d[(d.metric == "complement_logit_diff") & (d.split == "test")].set_index(KEYS)["per_prompt"]
    wide["complement_ld"] = comp.map(lambda v: np.asarray(v, dtype=float))
    wide["complement_ld"] = wide["complement_ld"].map(lambda v: v if isinstance(v, np.ndarray) else np.array([]))
    target = d[d.metric == "matched_size"].groupby(KEYS)["value"].apply(lambda v: tuple(int(x) for x in v))
    wide["targets"] = target
    wide["targets"] = wide["targets"].map(lambda v: v if isinstance(v, tuple) else ())
    wide["studied"] = False
    studied = d[d.metric == "studied"].set_index(KEYS).index
    wide.loc[wide.index.isin(studied), "studied"] = True
    return wide.reset_index()


def references(df: pd.DataFrame) -> pd.DataFrame:
    d = df[(df.method == REFERENCE) & (df.status == "ok")]
    out = {}
    for (task, seed), g in d.groupby(["task", "seed"]):
        row = {}
        for _, r in g.iterrows():
            if r.metric in ("m_sae", "m_empty", "m_model"):
                row[f"{r.metric}_{r.split}"] = float(r.value)
                if r.split == "test":
                    row[r.metric] = np.asarray(r.per_prompt, dtype=float)
            elif r.metric == "position_label":
                row.setdefault("labels", {})[int(r.pos)] = r.text
            else:
                row[r.metric] = float(r.value)
        labels = row.pop("labels", {})
        row["position_labels"] = [labels[p] for p in sorted(labels)]
        out[(task, int(seed))] = row
    ref = pd.DataFrame.from_dict(out, orient="index")
    ref.index = pd.MultiIndex.from_tuples(ref.index, names=["task", "seed"]) if len(ref) else ref.index
    return ref


def costs(df: pd.DataFrame) -> pd.DataFrame:
    d = ok_rows(df)
    d = d[(d.circuit < 0) & (d.method != REFERENCE) & (d.metric != "error") & (d.metric != CUT_RULE_METRIC)]
    if d.empty:
        return pd.DataFrame()
    return d.pivot_table(index=["task", "seed", "method"], columns="metric", values="value", aggfunc="first").reset_index()


CUT_RULE_METRIC = "cut_rule_train_F"  # one row per cut rule tried: text = rule (+ " (chosen)"), value = mean train F


def chosen_settings(df: pd.DataFrame) -> pd.DataFrame:
    """What each method's settings chosen on the train split came to, per task and method, summed
    over seeds: the cut rule of a ranking (rows ``cut_rule_train_F``; a ranking whose rules cannot
    differ is cut by |score|, "abs"), and for a circuits-method its circuits' own choices (the
    mask's schedule, whether its step ladder converged, and the learning rate its restarts chose,
    each counted over its circuits: every lambda of every seed)."""
    d = ok_rows(df)
    out = []
    for (task, method), g in d[d.method != REFERENCE].groupby(["task", "method"]):
        seeds = sorted(g.seed.unique())
        cut = g[g.metric == CUT_RULE_METRIC]
        # The rule each seed's cut circuits were made with (their params); rows from before the
        # rule was chosen carry none: "not recorded", never a guess.
        sized = g.metric.isin(["size_nodes", "size_edges"])  # a node or an edge method
        cuts = g[sized & (g.circuit_kind == "cut")]
        rules = {int(s): json.loads(p).get("cut_rule", "not recorded") for s, p in zip(cuts.seed, cuts.circuit_params)}
        row = {"task": task, "method": method, "n_seeds": len(seeds),
               "cut_rule": _count([rules.get(int(s), "not recorded") for s in seeds])}
        for rule in ("abs", "positive"):
            v = cut[cut.text.str.startswith(rule)].value
            row[f"train_F_{rule}"] = float(v.mean()) if len(v) else np.nan
        native = g[sized & (g.circuit_kind == "native")]
        params = [json.loads(p) for p in native.circuit_params]
        if params and "steps" in params[0]:
            # Counted over every circuit (each lambda of each seed): the step ladder converges per
            # lambda (mask version 4), so one seed's lambdas can settle on different schedules.
            row["steps"] = _count([str(p["steps"]) for p in params])
            row["steps_state"] = _count([p.get("steps_state", "") for p in params])
            row["restart_lr"] = _count([str(p.get("lr")) for p in params])
        out.append(row)
    return pd.DataFrame(out)


def _count(values: list[str]) -> str:
    """"positive ×4, abs ×1": each distinct value with how often it occurs, most frequent first."""
    vc = pd.Series(values).value_counts()
    return ", ".join(f"{k} ×{v}" for k, v in vc.items())


def errors(df: pd.DataFrame) -> pd.DataFrame:
    return df[df.status == "error"][["task", "seed", "method", "error"]].drop_duplicates()
