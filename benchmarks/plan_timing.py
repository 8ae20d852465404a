"""Where the seconds of ``bench plan`` go: each stage of ``make_plan`` timed in one process.

    python benchmarks/plan_timing.py --preset gemma-2-9b --json OUT.json [--jobs N]

Stages: imports (torch and the suite), the architecture (TransformerLens's and SAELens's offline configs,
which import both libraries), building the meta model, the task setup's simulation, then each method's
and the evaluator's simulation (with ``--jobs 1``, the default, each timed where it runs; with more
jobs only their total is known, the simulations running in forked workers). Wall seconds of this
process, ``time.perf_counter``; the interpreter's start and exit are outside (``/usr/bin/time`` around
``python -m bench plan`` gives the whole). Works at any commit that has ``make_plan``, ``plan_method``,
``plan_evaluator``, ``plan_setup`` and ``resolve_arch`` in make_plan's module (``bench.plan.make``, before
it ``bench.plan.estimate``), so the same script measures before and after a change.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

T0 = time.perf_counter()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="gemma-2-9b")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()

    import sys

    import torch

    try:  # make_plan's own module: bench.plan.make since the plan ran in workers, bench.plan.estimate before
        from bench.plan.make import make_plan
    except ImportError:
        from bench.plan.estimate import make_plan
    E = sys.modules[make_plan.__module__]

    stages: list[tuple[str, float]] = [("imports (torch, bench.plan)", time.perf_counter() - T0)]  # a name twice: summed

    def timed(label, fn):
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                name = label(*a) if callable(label) else label
                stages.append((name, time.perf_counter() - t))
        return wrapper

    E.resolve_arch = timed("architecture (TL and SAELens offline configs, their imports)", E.resolve_arch)
    E.build_meta = timed("build the meta model (and the logits probe's)", E.build_meta)
    E.plan_setup = timed("task setup simulation", E.plan_setup)
    E.plan_method = timed(lambda sp, st, name, *a: f"simulate {name}", E.plan_method)
    E.plan_evaluator = timed("simulate evaluator", E.plan_evaluator)
    kw = {"jobs": args.jobs} if "jobs" in E.make_plan.__code__.co_varnames else {}
    t = time.perf_counter()
    E.make_plan(args.preset, **kw)
    total_plan = time.perf_counter() - t
    timed_inside = sum(s for n, s in stages if n.startswith(("architecture", "build", "task setup", "simulate")))
    if args.jobs > 1:
        stages.append(("simulations in forked workers (all methods and the evaluator)", total_plan - timed_inside))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = {"preset": args.preset, "jobs": args.jobs, "commit": commit, "torch": torch.__version__,
           "python": platform.python_version(), "cores": len(__import__("os").sched_getaffinity(0)),
           "stages_seconds": {n: round(sum(s for m, s in stages if m == n), 3) for n in dict.fromkeys(n for n, _ in stages)},
           "make_plan_seconds": round(total_plan, 3), "process_seconds": round(time.perf_counter() - T0, 3)}
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    for n, s in out["stages_seconds"].items():
        print(f"{s:8.2f} s  {n}")
    print(f"{total_plan:8.2f} s  make_plan; {out['process_seconds']:.2f} s this process")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
