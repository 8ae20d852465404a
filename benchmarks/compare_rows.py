"""Do two runs' rows agree? The check behind "rows unchanged by the speed work".

    python benchmarks/compare_rows.py BEFORE_DIR AFTER_DIR [--json OUT.json]

Reads each directory's ``results.parquet`` and compares them row by row, leaving out the rows that
measure cost (wall time, memory) and the ``code_version`` column, which differ by design. Prints
"identical" or, per (method, task, metric), how many rows differ and by how much at most; with
``--json`` writes the same as a file. Exit code 0 when identical, 1 when not, 2 when the two tables
do not even hold the same rows (different counts or keys).

Where both directories hold the report's ``summary_pairwise.csv`` (a run with its report), it also
says whether any matched-size verdict (``verdict``, ``verdict_interval``: beats, tied, loses) changed
and how far the compared F values and their intervals moved: rows that differ by float rounding
may still leave every verdict as it was.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bench.run.costs import COST_METRICS as COST

KEYS = ["method", "task", "seed", "split", "metric", "circuit", "k", "site", "pos", "latent", "sample"]


def load(d: Path) -> pd.DataFrame:
    df = pd.read_parquet(d / "results.parquet")
    return df[~df.metric.isin(COST)].drop(columns=["code_version"]).reset_index(drop=True)


def _same(x, y) -> bool:
    if x is None and y is None:
        return True
    try:
        return bool(np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True))
    except TypeError:
        return bool(np.array_equal(np.asarray(x), np.asarray(y)))


def compare(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    if len(a) != len(b):
        return {"identical": False, "rows": [len(a), len(b)], "error": "different row counts"}
    keys = [k for k in KEYS if k in a.columns]
    ka, kb = a[keys].astype(str), b[keys].astype(str)
    # k and the circuit's contents may move with the method's output; the metric and method must not
    if not (ka[["method", "task", "metric"]].equals(kb[["method", "task", "metric"]])):
        return {"identical": False, "rows": [len(a), len(b)], "error": "rows hold different methods, tasks or metrics"}
    diff = np.zeros(len(a), dtype=bool)
    for c in a.columns:
        if c == "per_prompt":
            diff |= np.array([not _same(x, y) for x, y in zip(a[c], b[c])])
        elif a[c].dtype.kind in "fiu":
            diff |= ~((a[c] == b[c]) | (a[c].isna() & b[c].isna())).to_numpy()
        else:
            diff |= (a[c].astype(str) != b[c].astype(str)).to_numpy()
    out = {"identical": not diff.any(), "rows": len(a), "rows_differing": int(diff.sum()), "by_metric": []}
    if diff.any():
        d = a.loc[diff, ["method", "task", "metric", "k"]].copy()
        d["abs_diff"] = (a.loc[diff, "value"] - b.loc[diff, "value"]).abs()
        for (m, t, met), g in d.groupby(["method", "task", "metric"]):
            out["by_metric"].append({"method": m, "task": t, "metric": met, "rows": len(g),
                                     "max_abs_diff": float(g.abs_diff.max()),
                                     "smallest_k": None if g.k.isna().all() else float(g.k.min())})
    return out


def compare_circuits(a: pd.DataFrame, b: pd.DataFrame) -> list[dict]:
    """Per method and circuit kind: circuits matched by key (task, seed, circuit kind, size k for cuts
    or the circuit's index for a method's own, site) whose node counts differ, and keys found in one
    run only. :func:`compare` aligns rows by position, so where a size moved its maxima compare
    neighbouring sizes; this comparison does not."""
    out = []
    for (m, kind), ga in a[(a.metric == "site_nodes") & (a.split == "test")].groupby(["method", "circuit_kind"]):
        gb = b[(b.metric == "site_nodes") & (b.split == "test") & (b.method == m) & (b.circuit_kind == kind)]
        key = ["task", "seed", "k" if kind == "cut" else "circuit", "site"]
        va, vb = ga.groupby(key).value.first(), gb.groupby(key).value.first()
        j = pd.concat([va.rename("a"), vb.rename("b")], axis=1)
        both = j.notna().all(axis=1)
        out.append({"method": m, "kind": kind, "keys": len(j), "in_one_run_only": int((~both).sum()),
                    "differing": int((both & (j.a != j.b)).sum()),
                    "groups_differing": sorted({f"{t} seed {int(sd)}" for t, sd, *_ in j.index[both & (j.a != j.b)]})})
    return out


VERDICT_COLUMNS = ["verdict", "verdict_interval", "in_tally", "k"]
PAIR_KEYS = ["task", "target", "method", "vs"]


def compare_verdicts(before: Path, after: Path) -> dict | None:
    """The matched-size verdicts of two runs' reports (``summary_pairwise.csv``), or None if either
    has none."""
    fa, fb = before / "summary_pairwise.csv", after / "summary_pairwise.csv"
    if not (fa.exists() and fb.exists()):
        return None
    a, b = pd.read_csv(fa), pd.read_csv(fb)
    m = a.merge(b, on=PAIR_KEYS, how="outer", suffixes=("_before", "_after"), indicator=True)
    changed = [{**{k: r[k] for k in PAIR_KEYS}, **{c: [r[c + "_before"], r[c + "_after"]] for c in VERDICT_COLUMNS}}
               for _, r in m.iterrows()
               if any(str(r[c + "_before"]) != str(r[c + "_after"]) for c in VERDICT_COLUMNS)]
    moved = {c: float((m[c + "_before"] - m[c + "_after"]).abs().max()) for c in ("F_method", "F_vs", "diff", "lo", "hi")}
    return {"pairs": len(m), "unmatched": int((m["_merge"] != "both").sum()), "verdicts_changed": changed,
            "max_abs_moved": moved}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    before, after = load(args.before), load(args.after)
    res = compare(before, after)
    if "error" not in res and not res["identical"]:
        res["circuits"] = compare_circuits(before, after)
        for r in res["circuits"]:
            if r["differing"] or r["in_one_run_only"]:
                print(f"circuits: {r['method']} {r['kind']}: {r['differing']} of {r['keys']} differ "
                      f"({', '.join(r['groups_differing'])}), {r['in_one_run_only']} in one run only")
    verdicts = compare_verdicts(args.before, args.after)
    if verdicts is None:
        print("matched-size verdicts: not compared (a run without summary_pairwise.csv)")
    else:
        res["verdicts"] = verdicts
        print(f"matched-size verdicts: {len(verdicts['verdicts_changed'])} of {verdicts['pairs']} changed "
              f"({verdicts['unmatched']} pairs in one run only); F, difference and interval ends moved by at most "
              f"{max(verdicts['max_abs_moved'].values()):.3g}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    if "error" in res:
        print(f"not comparable: {res['error']} ({res['rows']})")
        return 2
    if res["identical"]:
        print(f"identical: {res['rows']} rows (cost rows and code_version aside)")
        return 0
    print(f"{res['rows_differing']} of {res['rows']} rows differ:")
    for r in res["by_metric"]:
        print(f"  {r['method']} {r['task']} {r['metric']}: {r['rows']} rows, max |diff| {r['max_abs_diff']:.3g}"
              + (f", k >= {r['smallest_k']:g}" if r["smallest_k"] is not None else ""))
    return 1


if __name__ == "__main__":
    sys.exit(main())
