"""Wide views of the long results table: the one place the report and the figures pivot rows.

* :func:`circuits` — one row per (task, seed, method, circuit): kind, sizes, every faithfulness
  form on test and train, complement faithfulness, whether the circuit is on the shared grid, the
  matched-size target it stands for (if any), whether it is the studied circuit, and the test
  split's per-prompt logit differences (for bootstrap intervals).
* :func:`references` — one row per (task, seed): the baselines' per-prompt test values.
* :func:`costs` — one row per (task, seed, method): the cost metrics and diagnostics.
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


def circuits(df: pd.DataFrame) -> pd.DataFrame:
    d = ok_rows(df)
    d = d[(d.circuit >= 0) & (d.method != REFERENCE)]
    if d.empty:
        return pd.DataFrame(columns=KEYS + ["kind", "size_nodes", "size_latents", "F_test", "F_train"])
    base = d[(d.metric == "size_nodes")][KEYS + ["circuit_kind", "circuit_params", "value"]].rename(
        columns={"circuit_kind": "kind", "value": "size_nodes"})
    base["grid"] = [bool(json.loads(p).get("grid", False)) for p in base.circuit_params]
    base = base.drop(columns="circuit_params")
    wide = base.set_index(KEYS)
    for metric, split, col in [("size_latents", "test", "size_latents"), ("complement_logit_diff", "test", "complement_ld_mean")]:
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
    d = d[(d.circuit < 0) & (d.method != REFERENCE) & (d.metric != "error")]
    if d.empty:
        return pd.DataFrame()
    return d.pivot_table(index=["task", "seed", "method"], columns="metric", values="value", aggfunc="first").reset_index()


def errors(df: pd.DataFrame) -> pd.DataFrame:
    return df[df.status == "error"][["task", "seed", "method", "error"]].drop_duplicates()
