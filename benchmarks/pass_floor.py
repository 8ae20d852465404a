"""Each method's wall time against the floor its model passes set: how much of a cell is the model.

    python benchmarks/pass_floor.py --results RUN_DIR --json OUT.json [--md OUT.md]

A method's cost rows count the prompt-passes it ran, each weighted by the share of the model's
blocks it ran (``forward_model_fraction``, ``backward_model_fraction``; :mod:`bench.run.costs`).
This script measures, in the same process and on the same machine, what one such unit costs on the
run's own world and task:

* ``t_forward``: seconds per prompt of an unedited spliced forward of every block without gradients
  (``SplicedModel.run`` from tokens, ``--rows`` prompts per call, the evaluator's batch on CPU);
* ``t_backward``: seconds per prompt of the backward pass of a forward with float masks at every
  site (the mask's and attribution patching's step: a ``--rows`` forward+backward minus a forward
  with the same graph).

A method's floor is ``forward_model_fraction * t_fwd + backward_model_fraction * t_backward``, with
``t_fwd`` the forward that builds a graph (``t_forward_with_graph``) for a method that runs a
backward and ``t_forward`` for one that does not: the time its passes would take if nothing but
those passes ran, at that batch size (other batch sizes run a little faster or slower per prompt, so
a ratio somewhat under 1 is possible). The evaluator's work (every method's circuits scored on
train and test, the knockouts) is not in these rows and has no floor here. The ratio
``wall_seconds / floor`` is what the rest costs (Python, captum's bookkeeping, small batches, the
SAE nonlinearity at other shapes, sorting): near 1 means the method is as fast as its passes allow,
and only fewer passes (or a faster machine) make it faster. Ratios are per (task, seed, method) and
summarised per method; run it on an idle machine (its unit times and the run's wall times both
assume one).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@functools.cache
def _run_world(run_dir: Path):
    """The run's config and its world, loaded once for every task measured (``--task all``)."""
    from bench.model.loading import load_world
    from bench.run.config import config_from_run

    cfg = config_from_run(run_dir / "run.json")
    return cfg, load_world(cfg.preset, cfg.error_policy, cfg.device)


def unit_costs(run_dir: Path, task: str, seed: int, rows: int, repeats: int) -> dict[str, float]:
    """(t_forward, t_backward) seconds per prompt-pass on the run's world and ``task``."""
    import torch

    from bench.run.setup import load_task, setup_task

    cfg, world = _run_world(run_dir)
    setup = setup_task(load_task(task), world, cfg, seed)
    ctx = setup.ctx
    data = ctx.train.subset([i % len(ctx.train) for i in range(rows)])
    sp = ctx.spliced

    def forward() -> None:
        with torch.no_grad():
            sp.run(data.clean)

    def forward_backward(backward: bool) -> None:
        masks = {s: torch.ones(data.n_pos, sp.d_sae(s), requires_grad=True) for s in ctx.sites}
        ld = ctx.masked_metric(masks, data, 0)
        if backward:
            ld.sum().backward()

    def median_time(fn) -> float:
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) / rows

    t_fwd = median_time(forward)
    t_graph = median_time(lambda: forward_backward(False))
    t_fb = median_time(lambda: forward_backward(True))
    return {"t_forward": t_fwd, "t_backward": max(0.0, t_fb - t_graph), "t_forward_with_graph": t_graph,
            "rows": rows, "repeats": repeats, "task": task, "seed": seed}


def ratios(run_dir: Path, units: dict):
    """Per-cell and per-method wall / floor. ``units``: one task's unit costs for every cell, or
    ``{task: unit costs}`` (``--task all``) for each cell's own task (its prompts' length)."""
    import numpy as np
    import pandas as pd

    df = pd.read_parquet(run_dir / "results.parquet")
    keys = ["task", "seed", "method"]
    cost = df[df.metric.isin(["wall_seconds", "forward_model_fraction", "backward_model_fraction"])]
    wide = cost.pivot_table(index=keys, columns="metric", values="value", aggfunc="first").reset_index()
    per_task = "t_forward" not in units

    def unit(name: str) -> np.ndarray:
        return wide.task.map(lambda t: units[t][name]).to_numpy() if per_task else np.full(len(wide), units[name])

    t_fwd = np.where(wide.backward_model_fraction > 0, unit("t_forward_with_graph"), unit("t_forward"))
    wide["floor_seconds"] = wide.forward_model_fraction * t_fwd + wide.backward_model_fraction * unit("t_backward")
    wide["ratio"] = wide.wall_seconds / wide.floor_seconds.where(wide.floor_seconds > 0)
    per_method = wide.groupby("method").agg(wall_seconds=("wall_seconds", "sum"), floor_seconds=("floor_seconds", "sum"),
                                            cells=("wall_seconds", "size")).reset_index()
    per_method["ratio"] = per_method.wall_seconds / per_method.floor_seconds.where(per_method.floor_seconds > 0)
    return wide, per_method.sort_values("wall_seconds", ascending=False)


def _records(df) -> list[dict]:
    """Rows for strict JSON: NaN (a cell with no passes has no ratio) as null."""
    return df.round(4).astype(object).where(df.notna(), None).to_dict("records")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", required=True, type=Path, help="a run folder (results.parquet, run.json)")
    ap.add_argument("--json", required=True, type=Path)
    ap.add_argument("--md", type=Path, default=None)
    ap.add_argument("--task", default=None, help="task the unit costs are measured on (default: the run's first; "
                    "'all': each task's own, for its cells)")
    ap.add_argument("--rows", type=int, default=128, help="prompts per measured pass (default: the CPU evaluator's 128)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--units", type=Path, default=None,
                    help="take the unit costs from this earlier output (its 'units') instead of measuring them")
    ap.add_argument("--label", default=None, help="how the output names the run folder (default: its name)")
    args = ap.parse_args(argv)
    run_json = json.loads((args.results / "run.json").read_text())
    task = args.task or run_json["config"]["tasks"][0]
    seed = int(run_json["config"]["seeds"][0])
    if args.units is not None:
        units = json.loads(args.units.read_text())["units"]
        task = units["task"] if "t_forward" in units else "all"
    elif task == "all":
        units = {t: unit_costs(args.results, t, seed, args.rows, args.repeats) for t in run_json["config"]["tasks"]}
    else:
        units = unit_costs(args.results, task, seed, args.rows, args.repeats)
    wide, per_method = ratios(args.results, units)
    label = args.label or args.results.name
    out = {"results": label, "commit": run_json.get("commit"), "units": units,
           "per_method": _records(per_method), "per_cell": _records(wide)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    if args.md:
        each = units if task == "all" else {task: units}
        costs = "; ".join(f"`{t}` forward {1e3 * u['t_forward']:.3f} ms per prompt without a graph, "
                          f"{1e3 * u['t_forward_with_graph']:.3f} ms building one, backward {1e3 * u['t_backward']:.3f} ms"
                          for t, u in each.items())
        first = next(iter(each.values()))
        lines = [f"# Wall time against the pass floor: {label} (commit {str(run_json.get('commit'))[:7]})", "",
                 f"Unit costs ({first['rows']} prompts per pass, median of {first['repeats']}"
                 + (", each cell's floor from its own task's" if task == "all" else ", every cell's floor from these")
                 + f"): {costs}. Floor = forward_model_fraction x forward (with a "
                 "graph for a method that runs a backward) + backward_model_fraction x backward; the evaluator's "
                 "work is not in these rows (`benchmarks/pass_floor.py`).", "",
                 "| method | cells | wall s | floor s | wall / floor |", "|---|---:|---:|---:|---:|"]
        for r in per_method.itertuples():
            ratio = "–" if r.floor_seconds == 0 else f"{r.ratio:.2f}"
            lines.append(f"| {r.method} | {r.cells} | {r.wall_seconds:.1f} | {r.floor_seconds:.1f} | {ratio} |")
        args.md.write_text("\n".join(lines) + "\n")
    print(per_method.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
