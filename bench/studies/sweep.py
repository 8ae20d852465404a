"""``python -m bench sweep``: one benchmark run per point of a grid of settings, and how the verdicts move.

A grid is a TOML file of axes, each a list of values::

    error_policy = ["drop", "keep", "mean"]
    ablation = ["mean", "zero", "counterfactual"]
    sites = [[], ["blocks.3.hook_resid_post"], ["blocks.1.hook_resid_post", "blocks.5.hook_resid_post"]]

Axes: ``error_policy``, ``ablation``, ``sites`` (SAE placement, ``[]`` = every SAE of the preset),
``preset``, ``tasks`` and ``methods`` (each value a name or a list of names), ``seeds`` (each value an
int or a list of ints). The command line gives the base setting (as ``bench all``); each point of the
product overrides its axes and runs with :func:`bench.run.runner.run_benchmark` into ``OUT/<slug>/``
(e.g. ``error_policy=drop__ablation=mean__sites=1-3-5``), so its cells are cached: a rerun keeps
every finished cell and a killed sweep resumes where it stopped.

Outputs in ``OUT``: ``sweep.json`` (grid, settings with slug, directory, seconds and cell counts,
failures), ``sweep_verdicts.csv`` (per setting: F(mask) − F(other) with its paired 95% interval at
each task and matched target, from :func:`bench.eval.verdict.pairwise`, the same numbers as each
setting's own report), ``sweep_report.md`` (which verdicts hold across the grid, which flip, and
along which axis) and ``figures/sweep_verdicts.png|pdf``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import re
import sys
import time
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import BenchError, UsageError, did_you_mean
from bench.run.config import RunConfig

log = logging.getLogger("bench.studies.sweep")

AXES = ("error_policy", "ablation", "sites", "preset", "tasks", "methods", "seeds")
VERDICT_COLUMNS = ("setting", "task", "target", "k", "method", "vs", "diff", "lo", "hi", "verdict", "n_seeds")
FIGURE_NAME = "sweep_verdicts"
N_BOOT = 2000  # as each setting's report.md, so the sweep's verdicts are the reports' verdicts
_SITE = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")


# ----- the grid ------------------------------------------------------------------------------------

def load_grid(path: str | Path) -> dict[str, list]:
    """Axis -> its values (normalised: tuples for lists), in the file's order; UsageError naming file and key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: grid file not found") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    if not raw:
        raise UsageError(f"{path}: names no axis; give at least one of {', '.join(AXES)}")
    grid = {}
    for key, values in raw.items():
        if key not in AXES:
            raise UsageError(f"{path}: key {key!r}: {did_you_mean(key, AXES, 'axis')}")
        if not isinstance(values, list):
            raise UsageError(f"{path}: key {key!r}: expected a list of values, e.g. {key} = {_example(key)}")
        if not values:
            raise UsageError(f"{path}: key {key!r}: an empty list gives no setting; give at least one value")
        norm = [_value(path, key, v) for v in values]
        dup = [v for v, n in Counter(norm).items() if n > 1]
        if dup:
            raise UsageError(f"{path}: key {key!r}: value {_json(dup[0])} appears twice")
        grid[key] = norm
    return grid


def _example(key: str) -> str:
    return {"error_policy": '["drop", "keep"]', "ablation": '["mean", "zero"]',
            "sites": '[[], ["blocks.3.hook_resid_post"]]', "preset": '["embedded"]', "tasks": '["sva", ["sva", "ioi"]]',
            "methods": '[["binary_mask", "random"]]', "seeds": "[0, [0, 1, 2]]"}[key]


def _value(path: Path, key: str, v):
    from bench.model.ablation import ABLATIONS
    from bench.model.spliced import ERROR_POLICIES

    def bad(why: str):
        return UsageError(f"{path}: key {key!r}: {why}")

    if key in ("error_policy", "ablation"):
        known = ERROR_POLICIES if key == "error_policy" else ABLATIONS
        if not isinstance(v, str) or v not in known:
            raise bad(did_you_mean(str(v), known, key.replace("_", " ")))
        return v
    if key == "preset":
        if not isinstance(v, str) or not v:
            raise bad(f"expected a preset name, got {_json(v)}")
        return v
    if key == "sites":
        if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v):
            raise bad(f"each value is a list of SAE hooks ([] = all), e.g. {_example(key)}; got {_json(v)}")
        if len(set(v)) != len(v):
            raise bad(f"{_json(v)} names a site twice")
        return tuple(v)
    if key in ("tasks", "methods"):
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list) or not items or not all(isinstance(s, str) and s for s in items):
            raise bad(f"each value is a name or a non-empty list of names, e.g. {_example(key)}; got {_json(v)}")
        return tuple(items)
    # seeds
    items = [v] if isinstance(v, int) and not isinstance(v, bool) else v
    if not isinstance(items, list) or not items or not all(isinstance(s, int) and not isinstance(s, bool) for s in items):
        raise bad(f"each value is a seed or a non-empty list of seeds, e.g. {_example(key)}; got {_json(v)}")
    return tuple(items)


def _json(v) -> str:
    return json.dumps(v, default=list)


def site_label(site: str) -> str:
    """``blocks.3.hook_resid_post`` -> ``3``; any other hook -> its name, made safe for a path."""
    m = _SITE.match(site)
    return m.group(1) if m else _safe(site)


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def value_label(axis: str, value) -> str:
    """How a value reads in a slug, a table column and a figure."""
    if axis == "sites":
        return "-".join(site_label(s) for s in value) if value else "all"
    if isinstance(value, tuple):
        return "+".join(_safe(str(x)) for x in value)
    return _safe(str(value))


def slug_of(labels: dict[str, str]) -> str:
    slug = "__".join(f"{a}={v}" for a, v in labels.items())
    if len(slug) > 150:  # keep directory names short; the hash keeps them apart
        slug = f"{slug[:120]}~{hashlib.sha256(slug.encode()).hexdigest()[:10]}"
    return slug


@dataclass(frozen=True)
class Setting:
    """One point of the grid: its slug, its axis values (and their labels) and the full RunConfig."""

    slug: str
    values: dict
    labels: dict
    cfg: RunConfig


def expand(grid: dict[str, list], base: RunConfig, path: str | Path = "grid", configure=None) -> list[Setting]:
    """The product of the axes, in the file's order, each point applied over ``base`` (then passed
    through ``configure``, e.g. the memory-budget fit of that point's preset, tasks and methods)."""
    axes = list(grid)
    settings = []
    for combo in itertools.product(*(grid[a] for a in axes)):
        values = dict(zip(axes, combo))
        labels = {a: value_label(a, v) for a, v in values.items()}
        try:
            cfg = dataclasses.replace(base, **values)
            if "methods" in values:  # options for a method this point does not run belong to other points
                cfg = dataclasses.replace(cfg, method_options={k: v for k, v in cfg.method_options.items()
                                                               if k in cfg.methods})
            cfg = configure(cfg) if configure is not None else cfg
        except UsageError as exc:
            raise UsageError(f"{path}: {exc}") from None
        settings.append(Setting(slug_of(labels), values, labels, cfg))
    every = {m for s in settings for m in s.cfg.methods}
    for key in base.method_options:
        if key not in every:
            raise UsageError(f"{path}: options for {key!r}: no setting of the grid runs {key!r} ({', '.join(sorted(every))})")
    seen = Counter(s.slug for s in settings)
    clash = [s for s, n in seen.items() if n > 1]
    if clash:
        raise UsageError(f"{path}: two grid points read the same ({clash[0]}); make the values of each key distinct")
    return settings


def preflight(settings: list[Setting], grid: dict, path: str | Path) -> None:
    """Every name, option, task file, device and site of every setting, checked before the first cell
    runs (one line on error)."""
    from bench import registry
    from bench.run import runner
    from bench.run.setup import preflight as run_preflight

    def where(key: str, flag: str) -> str:
        return f"{path}: key {key!r}" if key in grid else flag

    worlds = {}
    for s in settings:
        cfg = s.cfg
        try:
            run_preflight(cfg)
        except BenchError as exc:
            raise type(exc)(f"{path}: setting {s.slug}: {exc}") from None
        wkey = (cfg.preset, cfg.world_dir, cfg.device)
        if wkey not in worlds:
            try:  # the runner's own loader and cache: a later run of the same world reuses it
                worlds[wkey] = runner._world(dataclasses.replace(cfg, sites=()))
            except BenchError as exc:
                raise type(exc)(f"{where('preset', '--preset')}: {exc}") from None
        known = worlds[wkey].spliced.sites
        for site in cfg.sites:
            if site not in known:
                raise UsageError(f"{where('sites', '--sites')}: {did_you_mean(site, known, 'SAE site')}")
        for kind, names in (("method", cfg.methods), ("task", cfg.tasks)):
            known = registry.entries(kind)
            for name in names:
                if ":" in name or (kind == "task" and name.endswith((".json", ".jsonl"))):
                    continue  # module:Class, file.py:Class, task files: checked when the run loads them
                if name not in known:
                    raise UsageError(f"{where(kind + 's', '--' + kind + 's')}: {did_you_mean(name, known, kind)}")


# ----- running -------------------------------------------------------------------------------------

def run_sweep(args, base: RunConfig) -> int:
    """The CLI driver: run every setting, then the sweep table, report and figure. Returns the exit code."""
    from bench.report.render import render_run
    from bench.run.locking import lock_directory
    from bench.run.runner import run_benchmark

    grid_path = Path(args.grid)
    grid = load_grid(grid_path)
    settings = expand(grid, base, grid_path, _budget_per_setting(args, base, grid))
    out = Path(args.out)
    preflight(settings, grid, grid_path)
    if args.deterministic:
        from bench.run.setup import make_deterministic

        make_deterministic()
    log.info("sweep: %d setting(s) from %s into %s", len(settings), grid_path, out)
    with lock_directory(out):
        info = {"grid_file": str(grid_path), "grid": {a: [_plain(v) for v in vs] for a, vs in grid.items()},
                "base": dataclasses.asdict(base), "executor": args.executor, "setting_reports": not args.no_figures,
                "settings": [], "failures": [],
                "n_failed_cells": 0}
        for s in settings:
            info["settings"].append({"slug": s.slug, "dir": str(out / s.slug), "values": {a: _plain(v) for a, v in s.values.items()},
                                     "status": "pending"})
        _write_json(out / "sweep.json", info)
        for i, (s, rec) in enumerate(zip(settings, info["settings"]), 1):
            t0 = time.perf_counter()
            try:
                _, failures = run_benchmark(
                    s.cfg, out / s.slug, progress=not args.no_progress, executor=args.executor, jobs=args.jobs,
                    ray_address=args.ray_address, cell_timeout=args.cell_timeout, cell_max_memory_mb=args.cell_max_memory)
            except BenchError as exc:
                raise type(exc)(f"setting {s.slug}: {exc}") from None
            if not args.no_figures:
                try:
                    render_run(out / s.slug, out / s.slug / "figures")
                except Exception as exc:  # noqa: BLE001 - a setting's figures never stop the sweep
                    log.error("setting %s: figures/report failed: %s: %s", s.slug, type(exc).__name__, exc)
            seconds = time.perf_counter() - t0
            cells = json.loads((out / s.slug / "run.json").read_text()).get("cells", {})
            rec.update(status="done", seconds=round(seconds, 3), cells=cells, failures=failures)
            info["failures"] += [f"{s.slug}: {f}" for f in failures]
            info["n_failed_cells"] = len(info["failures"])
            _write_json(out / "sweep.json", info)
            log.info("setting %d/%d %s: %d cell(s) run, %d kept from earlier, %d failed, %.1f s", i, len(settings),
                     s.slug, cells.get("run", 0), cells.get("kept_from_earlier", 0), cells.get("failed", 0), seconds)
        rows = sweep_verdicts(settings, out)
        write_verdicts(rows, out)
        report = write_sweep_report(rows, settings, grid, info, out)
        figs = sweep_figure(rows, out / "figures")
    log.info("sweep: %d verdict rows in %s; report %s; figure %s", len(rows), out / "sweep_verdicts.csv", report,
             ", ".join(str(p) for p in figs) or "(none: no verdicts)")
    failed = info["failures"]
    if failed:
        for f in failed:
            print(f"error: failed cell: {f}", file=sys.stderr)
        n_set = sum(1 for r in info["settings"] if r.get("failures"))
        print(f"error: {len(failed)} cell(s) failed in {n_set} of {len(settings)} setting(s); every other cell "
              "finished and is saved (rerun to retry them)", file=sys.stderr)
        return 1
    return 0


def _budget_per_setting(args, base: RunConfig, grid: dict):
    """Under a memory budget (``--max-memory``, or CUDA), ``bench all`` fits method options and
    ``--max-rows`` to its preset, tasks, seeds and methods; where the grid changes one of those, each
    point gets its own fit, from the user's own options (``base`` holds the fit of the command line)."""
    from bench.plan.budget import apply_budget, run_budget
    from bench.run.config import default_max_rows, parse_method_options

    if run_budget(args)[0] is None or not set(grid) & {"preset", "tasks", "methods", "seeds", "sites"}:
        return None
    raw = dataclasses.replace(base, method_options=parse_method_options(args.option),
                              max_rows=default_max_rows(args.device) if args.max_rows is None else args.max_rows)
    return lambda cfg: apply_budget(dataclasses.replace(cfg, method_options=raw.method_options, max_rows=raw.max_rows), args)


def _plain(v):
    return list(v) if isinstance(v, tuple) else v


def _write_json(path: Path, info: dict) -> None:
    from bench.run.results import write_atomic

    text = json.dumps(info, indent=2, default=str) + "\n"
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


# ----- verdicts across the grid --------------------------------------------------------------------

def setting_verdicts(df: pd.DataFrame, n_boot: int = N_BOOT) -> pd.DataFrame:
    """``verdict.build(df, n_boot)["pairwise"]``, computing only that table."""
    from bench.eval import tables, verdict

    circ, ref = tables.circuits(df), tables.references(df)
    if circ.empty or ref.empty:
        return pd.DataFrame()
    return verdict.pairwise([verdict.TaskView(circ, ref, t, n_boot) for t in sorted(circ.task.unique())])


def sweep_verdicts(settings: list[Setting], out: Path, n_boot: int = N_BOOT) -> pd.DataFrame:
    """One block of rows per setting: its axis labels, then F(mask) − F(other) per task and matched target."""
    from bench.run.results import load_results

    axes = list(settings[0].labels) if settings else []
    blocks = []
    for s in settings:
        pw = setting_verdicts(load_results(out / s.slug), n_boot)
        if pw.empty:
            continue
        pw = pw.sort_values(["task", "target", "vs"]).reset_index(drop=True)
        pw.insert(0, "setting", s.slug)
        for j, a in enumerate(axes):
            pw.insert(j, a, s.labels[a])
        blocks.append(pw)
    if not blocks:
        return pd.DataFrame(columns=[*axes, *VERDICT_COLUMNS])
    rows = pd.concat(blocks, ignore_index=True)
    return rows[[*axes, *VERDICT_COLUMNS]]


def write_verdicts(rows: pd.DataFrame, out: Path) -> Path:
    from bench.run.results import write_atomic

    path = out / "sweep_verdicts.csv"
    write_atomic(path, lambda tmp: rows.to_csv(tmp, index=False))
    return path


def _axes_of(rows: pd.DataFrame) -> list[str]:
    return [c for c in rows.columns if c not in VERDICT_COLUMNS]


def _who(method: str) -> str:
    return "mask" if method == "binary_mask" else method


def comparisons(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, target, reference, vs): how its verdict reads over the settings that have it."""
    out = []
    n_settings = rows.setting.nunique()
    for (task, target, method, vs), g in rows.groupby(["task", "target", "method", "vs"], sort=True):
        counts = Counter(g.verdict)
        words = sorted(counts, key=lambda w: (-counts[w], w))
        parts = [f"{words[0]} in {counts[words[0]]} of {len(g)} settings"] + [f"{w} in {counts[w]}" for w in words[1:]]
        missing = n_settings - len(g)
        text = f"{_who(method)} vs {vs} on {task} @~{target}: " + ", ".join(parts)
        if missing:
            text += f" (no verdict in {missing} setting{'s' * (missing > 1)})"
        out.append({"task": task, "target": target, "method": method, "vs": vs, "holds": len(counts) == 1,
                    "n": len(g), "missing": missing, "text": text})
    return pd.DataFrame(out)


def axis_effect(rows: pd.DataFrame, axis: str) -> pd.DataFrame:
    """Per comparison: the verdicts at each value of ``axis``, and in how many lines (settings equal on
    every other axis) the verdict changes when only ``axis`` changes."""
    axes = _axes_of(rows)
    others = [a for a in axes if a != axis]
    values = list(dict.fromkeys(rows[axis]))
    out = []
    for (task, target, method, vs), g in rows.groupby(["task", "target", "method", "vs"], sort=True):
        r = {"comparison": f"{_who(method)} vs {vs} on {task} @~{target}"}
        for v in values:
            c = Counter(g[g[axis] == v].verdict)
            r[f"{axis}={v}"] = ", ".join(f"{w} {c[w]}" for w in sorted(c, key=lambda w: (-c[w], w))) or "–"
        lines = [gg for _, gg in g.groupby(others, sort=True)] if others else [g]
        lines = [gg for gg in lines if len(gg) > 1]
        changed = sum(1 for gg in lines if gg.verdict.nunique() > 1)
        r["changes"] = f"{changed} of {len(lines)}" if lines else "–"
        r["_changed"] = changed
        out.append(r)
    return pd.DataFrame(out)


def write_sweep_report(rows: pd.DataFrame, settings: list[Setting], grid: dict, info: dict, out: Path) -> Path:
    from bench.report.markdown import markdown_table

    base = info.get("base", {})
    fixed = {k: base.get(k) for k in ("preset", "tasks", "methods", "seeds", "error_policy", "ablation", "sites",
                                      "n_train", "n_test", "quick") if k not in grid}
    lines = [
        "# Sweep: matched-size verdicts across settings", "",
        f"Grid `{info.get('grid_file', '?')}`: "
        + "; ".join(f"`{a}` = {', '.join(value_label(a, v) for v in vs)}" for a, vs in grid.items())
        + f" — {len(settings)} setting(s), each a full run in `<out>/<slug>/` (results, run.json"
        + ("" if info.get("setting_reports") is False else ", report.md, figures") + ").", "",
        "Fixed for every setting: " + ", ".join(f"{k} `{_plain(v)}`" for k, v in fixed.items()) + ".", "",
        "Each verdict is that setting's own (bench.eval.verdict.pairwise, as in its report.md): F(mask) − F(other) on the "
        "held-out test split at the matched size, paired per seed, 95% Student-t interval over seeds (one seed: a "
        "bootstrap over test prompts); "
        "**beats**: the interval lies above 0, **loses**: below, **tied**: it contains 0. "
        "Every row is in `sweep_verdicts.csv`; the figure is `figures/sweep_verdicts.png`.", "",
    ]
    failed = info.get("failures", [])
    if failed:
        lines += [f"**{len(failed)} cell(s) failed** (their comparisons are missing from the settings they belong to):", ""]
        lines += [f"- {f}" for f in failed] + [""]
    if rows.empty:
        lines += ["No setting produced a verdict (no circuits; see the failed cells).", ""]
    else:
        comp = comparisons(rows)
        hold, flip = comp[comp.holds], comp[~comp.holds]
        lines += ["## Across the whole grid", "",
                  f"{len(hold)} of {len(comp)} comparisons keep one verdict in every setting that has them; "
                  f"{len(flip)} flip.", ""]
        lines += ["### Hold", ""] + ([f"- {t}" for t in hold.text] or ["(none)"]) + [""]
        lines += ["### Flip", ""] + ([f"- {t}" for t in flip.text] or ["(none)"]) + [""]
        lines += ["## By axis", "",
                  "Per axis value: the verdicts over the settings with that value. `changes`: in how many lines of the "
                  "grid (settings equal on every other axis) the verdict changes when only this axis changes.", ""]
        for axis in _axes_of(rows):
            eff = axis_effect(rows, axis)
            n_values = rows[axis].nunique()
            lines += [f"### {axis}", ""]
            if n_values < 2:
                lines += [f"One value ({rows[axis].iloc[0]}): nothing to compare along this axis.", ""]
                continue
            moved = eff[eff._changed > 0]
            lines += [f"{len(moved)} of {len(eff)} comparisons change verdict with {axis} alone (other axes fixed)"
                      + (": " + "; ".join(moved.comparison) if len(moved) else "") + ".", ""]
            lines += [markdown_table(eff.drop(columns="_changed")), ""]
    lines += ["## Settings", ""]
    lines += [markdown_table(pd.DataFrame([{"setting": r["slug"], "seconds": round(r.get("seconds", float("nan")), 1),
                                            "cells run": r.get("cells", {}).get("run"),
                                            "kept": r.get("cells", {}).get("kept_from_earlier"),
                                            "failed": r.get("cells", {}).get("failed")}
                                           for r in info.get("settings", [])])), ""]
    path = out / "sweep_report.md"
    path.write_text("\n".join(lines))
    return path


# ----- the figure ----------------------------------------------------------------------------------

def sweep_figure(rows: pd.DataFrame, out_dir: str | Path, name: str = FIGURE_NAME) -> list[Path]:
    """F(mask) − F(other) ± paired 95% CI: one panel per (task, matched target), settings on y (grid
    order), one point per compared method (coloured as in every figure), a vertical line at 0. A
    filled marker: the interval excludes 0 (beats / loses); hollow: tied. Byte-stable (style.save)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from figures import style

    if rows is None or rows.empty:
        return []
    style.setup()
    axes_names = _axes_of(rows)
    settings = list(dict.fromkeys(rows.setting))
    label_of = {s: " · ".join(str(v) for v in g.iloc[0][axes_names]) for s, g in rows.groupby("setting", sort=False)}
    present = set(rows.vs) | set(rows.method)
    ordered = [m for m in style.METHOD_ORDER if m in present] + sorted(m for m in present if m not in style.METHOD_ORDER)
    vs_methods = [m for m in ordered if m in set(rows.vs)]
    panels = sorted({(t, int(k)) for t, k in zip(rows.task, rows.target)})
    tasks = sorted({t for t, _ in panels})
    targets = sorted({k for _, k in panels})
    n_s = len(settings)
    fig, grid = plt.subplots(len(tasks), len(targets), squeeze=False,
                             figsize=(2.9 * len(targets) + 1.2, (0.22 * n_s * max(1.0, len(vs_methods) / 3) + 1.0) * len(tasks)))
    offsets = np.linspace(-0.3, 0.3, len(vs_methods)) if len(vs_methods) > 1 else np.zeros(1)
    y_of = {s: n_s - 1 - i for i, s in enumerate(settings)}
    for ti, task in enumerate(tasks):
        for ki, target in enumerate(targets):
            ax = grid[ti][ki]
            d = rows[(rows.task == task) & (rows.target == target)]
            if d.empty:
                ax.set_visible(False)
                continue
            for j, m in enumerate(vs_methods):
                c = style.color(m, ordered)
                for r in d[d.vs == m].itertuples():
                    y = y_of[r.setting] + offsets[j]
                    ok = bool(np.isfinite(r.lo) and np.isfinite(r.hi))
                    if ok:
                        ax.errorbar(r.diff, y, xerr=[[r.diff - r.lo], [r.hi - r.diff]], fmt="none", ecolor=c, elinewidth=1,
                                    capsize=1.5)
                    filled = r.verdict in ("beats", "loses")
                    ax.plot(r.diff, y, "o", ms=3.5, color=c, mfc=c if filled else "white", mew=0.9)
            ax.axvline(0, color="k", lw=0.8)
            ks = sorted({int(x) for x in d.k})
            ax.set_title(f"{task} @~{target}  (k {ks[0]}{'–' + str(ks[-1]) if len(ks) > 1 else ''})", fontsize=9)
            ax.set_ylim(-0.7, n_s - 0.3)
            ax.set_yticks(range(n_s), [label_of[s] for s in reversed(settings)] if ki == 0 else [""] * n_s, fontsize=7)
            ax.grid(axis="y", alpha=0.0)
            if ti == len(tasks) - 1:
                ax.set_xlabel("F(mask) − F(other), 95% CI", fontsize=8)
        grid[ti][0].set_ylabel(" · ".join(axes_names), fontsize=8)
    handles = [Line2D([], [], color=style.color(m, ordered), marker="o", ls="-", ms=4, label=style.label(m)) for m in vs_methods]
    handles += [Line2D([], [], color="k", marker="o", ls="", mfc="white", ms=4, label="hollow: tied (CI contains 0)")]
    fig.legend(handles=handles, loc="lower center", ncol=min(3, len(handles)), bbox_to_anchor=(0.5, -0.02))
    fig.suptitle("Matched-size verdict in every setting of the sweep: right of 0 = the mask is more faithful at the "
                 "same number of nodes (test split)", fontsize=9)
    fig.tight_layout(rect=(0, 0.05 + 0.02 * (len(handles) // 3), 1, 1))
    return style.save(fig, Path(out_dir), name)
