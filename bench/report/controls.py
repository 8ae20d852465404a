"""Real tasks next to their controls: does a method's faithfulness survive where it should not?

A control run (``python -m bench control NAME``, see :mod:`bench.run.controls`) writes its rows to
``RESULTS/controls/NAME/``. For every task, headline target and method this module puts the real
run's test F (with its 95% interval) next to the control's, and flags the pair when the control's F
lies inside the real interval or above it with a circuit no larger than the real one, where the
real interval lies above 0 (a real F of ~0 that a control also "reaches" says nothing; each run
matches a target to its own mask's nearest size, so the two sizes differ; a control that needs
more nodes is not flagged): then the method reaches on a control, where no task mechanism
supports the answers, the faithfulness it reaches on the real task, and that F cannot be read as
evidence of a mechanism. (For the ``basis`` control, the same flag means the residual
coordinates are as faithful as the SAE latents at the same node count.) It also gives each run's signal m(M+SAE) − m(∅): a control whose
signal is near 0 has nothing to explain and its F is noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.eval import verdict

CONTROLS_DIR = "controls"


def control_dirs(results: Path) -> dict[str, Path]:
    root = Path(results) / CONTROLS_DIR
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / "results.parquet").is_file()}


def signal(tables: dict) -> pd.DataFrame:
    """Per task: mean over seeds of m(M+SAE) − m(∅) on the test split, and of m(M+SAE)."""
    ref = tables["references"]
    rows = []
    if ref is None or ref.empty:
        return pd.DataFrame()
    for task in sorted(set(ref.index.get_level_values(0))):
        r = ref.loc[task]
        rows.append({"task": task, "m_sae": float(np.mean([np.mean(x) for x in r["m_sae"]])),
                     "signal": float(np.mean([np.mean(a) - np.mean(b) for a, b in zip(r["m_sae"], r["m_empty"])]))})
    return pd.DataFrame(rows)


def compare(real: dict, controls: dict[str, dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(matched F real vs each control, flagged) and (signal per run and task)."""
    rows = []
    for name, t in controls.items():
        m_real = t.get("real", real)["matched"]  # the real run on the control's seeds
        m_c = t["matched"]
        if m_real.empty or m_c.empty:
            continue
        merged = m_real.merge(m_c, on=["task", "target", "method"], suffixes=("_real", "_control"))
        for _, r in merged.iterrows():
            # as good: the real circuit is faithful at all (its interval above 0), and the control
            # reaches its interval (or above) with at most as many nodes
            flag = bool(np.isfinite(r.F_control) and np.isfinite(r.lo_real) and r.lo_real > 0
                        and r.F_control >= r.lo_real and r.k_control <= r.k_real)
            rows.append({"control": name, "seeds": "/".join(map(str, t.get("seeds", []))) or "all", "task": r.task, "target": r.target, "method": r.method,
                         "k_real": r.k_real, "k_control": r.k_control,
                         "F_real": r.F_real, "lo_real": r.lo_real, "hi_real": r.hi_real,
                         "F_control": r.F_control, "lo_control": r.lo_control, "hi_control": r.hi_control,
                         "F_train_control": r.F_train_control, "control_as_good": flag})
    sig = []
    for name, t in {"real": real, **controls}.items():
        s = signal(t)
        if not s.empty:
            sig.append(s.assign(run=name))
    return pd.DataFrame(rows), (pd.concat(sig, ignore_index=True) if sig else pd.DataFrame())


# settings a control may differ in from its real run (what makes it a control, or runtime only)
_MAY_DIFFER = {"preset", "answers", "device", "max_rows", "world_dir"}


def _config(path: Path) -> dict:
    """A run's recorded settings, with every setting it predates at its default: a run recorded before
    a field existed (e.g. the edge settings) ran as that default says, so it is not "different"."""
    import dataclasses
    import json

    from bench.run.config import RunConfig
    from bench.run.results import read_run_json

    defaults = {f.name: json.loads(json.dumps(f.default if f.default is not dataclasses.MISSING else f.default_factory()))
                for f in dataclasses.fields(RunConfig)}
    return {**defaults, **read_run_json(path).get("config", {})}


def load_controls(results: Path, n_boot: int = 2000, real_df: pd.DataFrame | None = None) -> tuple[dict[str, dict], list[str]]:
    """(control name -> its report tables, notes on controls left out because their settings differ).

    A control run on a subset of the real run's seeds (``bench control --seeds``) is compared with
    the real run on those seeds only: its entry then also holds ``"real"``, the real run's tables
    rebuilt from ``real_df`` restricted to them."""
    from bench.run.results import load_results

    real = _config(results)
    out, notes = {}, []
    for name, p in control_dirs(results).items():
        ctl = _config(p)
        differ = sorted(k for k in set(real) | set(ctl) if k not in _MAY_DIFFER | {"seeds"} and real.get(k) != ctl.get(k))
        seeds = ctl.get("seeds") or []
        if not set(seeds) <= set(real.get("seeds") or []):
            differ.append("seeds (not a subset)")
        if differ:
            notes.append(f"control `{name}` left out: its settings differ from this run's in {', '.join(differ)}")
            continue
        tables = verdict.build(load_results(p), n_boot)
        if sorted(seeds) != sorted(real.get("seeds") or []) and real_df is not None:
            tables["real"] = verdict.build(real_df[real_df.seed.isin(seeds)], n_boot)
            tables["seeds"] = list(seeds)
        out[name] = tables
    return out, notes


def flags_for_pairwise(cmp: pd.DataFrame) -> dict[tuple[str, int, str], list[str]]:
    """(task, target, method) -> the controls on which that method is flagged."""
    out: dict[tuple[str, int, str], list[str]] = {}
    if cmp.empty:
        return out
    for _, r in cmp[cmp.control_as_good].iterrows():
        out.setdefault((r.task, int(r.target), r.method), []).append(r.control)
    return out
