"""What a change of the spliced forward saves, alternating the two ways in one process.

    python benchmarks/forward_timing.py --change last_block --json OUT.json [--tasks dict_keyerror,sva] [--reps 5]

``--change final_site``: the final residual's SAE substituted at the last position only
(``SplicedModel.is_final`` answering no is the way before it). ``--change last_block``: the last
block run at the last position only (``bench.model.last_block``; ``SplicedModel._last_block_alone``
answering no is the way before it). On the embedded world with a quick run's task setup (64 test
prompts) it times two passes, each the way before and the code as it is, alternated: an evaluation
of 20 circuits (cuts of random rankings at 10 to 1000 nodes) with the evaluator's own ``lds``, and
a masked forward and backward into float masks at every site on the train prompts (the binary
mask's step). Writes the median seconds of each, the median of the per-alternation ratios, and how
far apart the two ways' outputs are. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

# change -> (attribute of SplicedModel, its stand-in for the way before the change)
CHANGES = {"final_site": ("is_final", lambda self, site: False),
           "last_block": ("_last_block_alone", lambda self: False)}


def measure(task: str, reps: int, change: str) -> dict:
    import torch

    from bench.data import logit_diff
    from bench.eval.sizes import top_k_circuit
    from bench.model.loading import load_world
    from bench.model.masked import run_masked
    from bench.model.spliced import SplicedModel
    from bench.run.config import make_config
    from bench.run.setup import load_task, setup_task

    su = setup_task(load_task(task), load_world("embedded"), make_config(quick=True), 0)
    ev, ctx = su.evaluator, su.ctx
    g = torch.Generator().manual_seed(0)
    circuits = [top_k_circuit({s: torch.rand(m.shape, generator=g) for s, m in su.universe.items()},
                              su.universe, k, "abs").masks for k in [10, 30, 100, 300, 1000] * 4]
    soft = {s: torch.rand(m.shape, generator=g) for s, m in su.universe.items()}
    train = ctx.train
    prefix = ctx.spliced.prefix(train.clean, count=False)
    repl = ctx.replacement.rows(0, len(train))

    def grad_pass() -> torch.Tensor:
        masks = {s: m.clone().requires_grad_(True) for s, m in soft.items()}
        ld = logit_diff(run_masked(ctx.spliced, prefix, masks, repl), train.clean_answer, train.patch_answer)
        ld.sum().backward()
        return torch.cat([ld.detach(), *(m.grad.flatten() for m in masks.values())])

    passes = {"evaluation": lambda: ev.lds(circuits, "test"), "masked forward and backward": grad_pass}
    name, before = CHANGES[change]
    real = getattr(SplicedModel, name)
    ways = {"before": before, "after": real}
    result = {"positions": train.n_pos, "test_prompts": len(ev.splits["test"].data), "circuits": len(circuits),
              "train_prompts": len(train)}
    try:
        for pname, fn in passes.items():
            times: dict[str, list[float]] = {w: [] for w in ways}
            out: dict[str, torch.Tensor] = {}
            for _ in range(reps + 1):  # the first round warms up and is not counted
                for w, impl in ways.items():
                    setattr(SplicedModel, name, impl)
                    t = time.perf_counter()
                    out[w] = fn()
                    times[w].append(time.perf_counter() - t)
            a, b = out["before"], out["after"]
            ratios = [y / x for x, y in zip(times["before"][1:], times["after"][1:])]
            result[pname] = {"median_seconds": {w: round(statistics.median(v[1:]), 4) for w, v in times.items()},
                             "median_ratio_after_over_before": round(statistics.median(ratios), 3),
                             "identical": bool(torch.equal(a, b)), "max_abs_diff": float((a - b).abs().max())}
    finally:
        setattr(SplicedModel, name, real)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--tasks", default="dict_keyerror,sva")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--change", choices=sorted(CHANGES), required=True)
    args = ap.parse_args(argv)
    import os
    import platform
    import subprocess

    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    res = {"commit": commit, "torch": torch.__version__, "python": platform.python_version(),
           "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
           "change": args.change,
           "tasks": {t: measure(t, args.reps, args.change) for t in args.tasks.split(",")}}
    args.json.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
