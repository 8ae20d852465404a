"""What substituting the final residual's SAE at the last position only saves in an evaluation forward.

    python benchmarks/final_site_timing.py --json OUT.json [--tasks dict_keyerror,sva] [--reps 5]

On the embedded world with a quick run's task setup (64 test prompts), it evaluates 20 circuits
(cuts of random rankings at 10 to 1000 nodes) with the evaluator's own ``lds``, alternating the
two ways in one process: "every position" (``SplicedModel.is_final`` answering no, as before the
change) and "last position" (the code as it is). Writes the median seconds of each, the median of
the per-alternation ratios, and whether the two gave the same logit differences. Run it on an idle
machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def measure(task: str, reps: int) -> dict:
    import torch

    from bench.eval.sizes import top_k_circuit
    from bench.model.loading import load_world
    from bench.model.spliced import SplicedModel
    from bench.run.config import make_config
    from bench.run.setup import load_task, setup_task

    su = setup_task(load_task(task), load_world("embedded"), make_config(quick=True), 0)
    ev = su.evaluator
    g = torch.Generator().manual_seed(0)
    circuits = [top_k_circuit({s: torch.rand(m.shape, generator=g) for s, m in su.universe.items()},
                              su.universe, k, "abs").masks for k in [10, 30, 100, 300, 1000] * 4]
    real = SplicedModel.is_final
    ways = {"every position": lambda self, site: False, "last position": real}
    times: dict[str, list[float]] = {w: [] for w in ways}
    out: dict[str, torch.Tensor] = {}
    try:
        for _ in range(reps + 1):  # the first round warms up and is not counted
            for w, fn in ways.items():
                SplicedModel.is_final = fn
                t = time.perf_counter()
                out[w] = ev.lds(circuits, "test")
                times[w].append(time.perf_counter() - t)
    finally:
        SplicedModel.is_final = real
    a, b = out["every position"], out["last position"]
    ratios = [y / x for x, y in zip(times["every position"][1:], times["last position"][1:])]
    return {"positions": su.ctx.train.n_pos, "test_prompts": len(ev.splits["test"].data), "circuits": len(circuits),
            "median_seconds": {w: round(statistics.median(v[1:]), 4) for w, v in times.items()},
            "median_ratio_last_over_every": round(statistics.median(ratios), 3),
            "same_logit_differences": bool(torch.equal(a, b)), "max_abs_diff": float((a - b).abs().max())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--tasks", default="dict_keyerror,sva")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    import os
    import platform
    import subprocess

    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    res = {"commit": commit, "torch": torch.__version__, "python": platform.python_version(),
           "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
           "tasks": {t: measure(t, args.reps) for t in args.tasks.split(",")}}
    args.json.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
