"""The committed edge verdicts (``reports/edges/``, ``reports/edges-sva-defaults/``) agree with a
seed-level t interval recomputed here from their per-prompt rows, not through bench.eval.

Per seed F = (mean test LD(E) − mean LD(∅)) / (mean LD(M+SAE) − mean LD(∅)) of the circuit each
``matched_size`` row names; F(edge mask) − F(edge AtP) per seed at each target; a Student-t interval
over the seeds. The README's edge numbers are these CSVs' ``diff`` column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

ROOT = Path(__file__).resolve().parents[1] / "reports"
RUNS = ("edges", "edges-sva-defaults")


def _per_seed(rows: pd.DataFrame) -> dict:
    ok = rows[rows.status == "ok"]
    ref = ok[(ok.method == "(reference)") & (ok.split == "test") & ok.metric.isin(["m_sae", "m_empty"])]
    base = {(r.task, int(r.seed), r.metric): float(np.mean(r.per_prompt)) for r in ref.itertuples()}
    ld = ok[(ok.metric == "logit_diff") & (ok.split == "test") & (ok.circuit >= 0)]
    ld = {(r.task, int(r.seed), r.method, int(r.circuit)): float(np.mean(r.per_prompt)) for r in ld.itertuples()}
    out: dict = {}
    for r in ok[ok.metric == "matched_size"].itertuples():
        s, e = base[(r.task, int(r.seed), "m_sae")], base[(r.task, int(r.seed), "m_empty")]
        out.setdefault((r.task, r.method, int(r.value)), {})[int(r.seed)] = (
            ld[(r.task, int(r.seed), r.method, int(r.circuit))] - e) / (s - e)
    return out


@pytest.mark.parametrize("run", RUNS)
def test_committed_edge_verdicts_follow_the_seed_level_t_interval(run):
    rows = pd.read_parquet(ROOT / run / "results.parquet")
    csv = pd.read_csv(ROOT / run / "summary_edge_pairwise.csv")
    per_seed = _per_seed(rows)
    assert len(csv) and set(csv.method) == {"edge_mask"} and set(csv.vs) == {"edge_attribution_patching"}
    for r in csv.itertuples():
        a, b = per_seed[(r.task, r.method, int(r.target))], per_seed[(r.task, r.vs, int(r.target))]
        seeds = sorted(set(a) & set(b))
        d = np.array([a[s] - b[s] for s in seeds])
        half = sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        where = f"{run}: {r.task} ~{r.target}"
        assert r.n_seeds == len(d) == 5, where
        assert r.diff == pytest.approx(d.mean(), abs=1e-9), where
        assert [r.lo, r.hi] == pytest.approx([d.mean() - half, d.mean() + half], abs=1e-9), where
        assert r.verdict == ("beats" if r.lo > 0 else "loses" if r.hi < 0 else "tied"), where
        assert r.n_positive == int((d > 0).sum()), where


def test_the_readmes_sva_defaults_numbers_are_the_csvs():
    """README.md quotes the defaults run's three differences; they are the CSV's, rounded."""
    csv = pd.read_csv(ROOT / "edges-sva-defaults" / "summary_edge_pairwise.csv").sort_values("target")
    v = [f"{d:+.2f}" for d in csv["diff"]]
    assert f"by {v[0]}, {v[1]} and {v[2]} in F" in (ROOT.parent / "README.md").read_text(), v
    assert list(csv.verdict) == ["beats"] * 3
