"""``python -m bench plan``: predicted peak memory and compute per method, from the architecture alone."""

from __future__ import annotations

import argparse
import json

from bench.errors import UsageError
from bench.plan.budget import fit_settings
from bench.plan.edges import EDGE_MODELLED
from bench.plan.estimate import (
    DEFAULT_CANDIDATES_PER_POS,
    DEFAULT_SEQ_LEN,
    DEFAULT_TFLOPS,
    DTYPE_BYTES,
    Settings,
)
from bench.plan.make import make_plan
from bench.plan.text import format_plan
from bench.run.config import parse_method_options


def add_plan_command(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("plan", help="predicted peak memory and compute per method, from the architecture alone")
    p.add_argument("--preset", default="embedded", help="preset name or TOML file (default: embedded)")
    p.add_argument("--world", default=None, help="embedded-world directory (default: the shipped one)")
    p.add_argument("--dtype", default=None, choices=sorted(DTYPE_BYTES), help="default: the preset's on CUDA "
                   "(the plan is for a GPU; Gemma presets: bfloat16)")
    p.add_argument("--gpu-memory", type=float, default=80.0, help="GPU memory in GiB (default: 80)")
    p.add_argument("--tflops", type=float, default=None,
                   help=f"sustained TFLOP/s for seconds (default: {DEFAULT_TFLOPS['float32']:g} fp32, "
                        f"{DEFAULT_TFLOPS['bfloat16']:g} bf16)")
    p.add_argument("--seq-len", type=int, default=DEFAULT_SEQ_LEN, help=f"prompt length in tokens (default {DEFAULT_SEQ_LEN})")
    p.add_argument("--n-train", type=int, default=None, help="train prompts (default: the run's)")
    p.add_argument("--n-test", type=int, default=None, help="test prompts (default: the run's)")
    p.add_argument("--max-rows", type=int, default=None, help="evaluator rows per forward (default: the run's)")
    p.add_argument("--error-policy", default=None, help="drop, keep or mean (default: the run's)")
    p.add_argument("--ablation", default=None, help="mean, zero or counterfactual (default: the run's)")
    p.add_argument("--methods", default=None, help="comma list (default: the node methods `bench all` runs; the edge methods edge_mask and "
                        "edge_attribution_patching when named)")
    p.add_argument("--edge-max-nodes", type=int, default=None,
                   help="edge methods: nodes of the assumed edge universe (default: the run's cap, 48)")
    p.add_argument("--candidates-per-position", type=int, default=DEFAULT_CANDIDATES_PER_POS,
                   help="exact patching: candidate latents per site and position (default %(default)s)")
    p.add_argument("--logits", default="code", choices=("code", "all", "last"),
                   help="logits as the code computes them (default), or forced to all / the last position")
    p.add_argument("--compare-logits", action="store_true",
                   help="also plan every method with the logits computed the other way (all positions vs the "
                        "last): the 'peak if logits at ...' column; doubles the planning time")
    p.add_argument("--option", action="append", default=[], metavar="METHOD.KEY=VALUE", help="method option (JSON value)")
    p.add_argument("--fit", action="store_true",
                   help="fit every method's batch-like options and the evaluator's max-rows to --gpu-memory "
                        "(what a run with --max-memory does; bench.plan.budget) and plan at them")
    p.add_argument("--jobs", type=int, default=None,
                   help="simulations in this many forked processes (default and 0: one per core, at most 4; 1: in "
                        "this process; the plan is the same)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plan)
    return p


def settings_from_args(args, preset_dtype: str) -> Settings:
    methods = tuple(x.strip() for x in args.methods.split(",")) if args.methods else None
    return Settings.defaults(
        n_train=args.n_train, n_test=args.n_test, seq_len=args.seq_len, dtype=args.dtype or preset_dtype,
        max_rows=args.max_rows, error_policy=args.error_policy, ablation=args.ablation,
        candidates_per_pos=args.candidates_per_position, methods=methods, edge_max_nodes=getattr(args, "edge_max_nodes", None), method_options=parse_method_options(args.option),
        gpu_memory_gib=args.gpu_memory, tflops=args.tflops, logits=args.logits,
        compare_logits=getattr(args, "compare_logits", False))


def cmd_plan(args) -> int:
    from bench.model.presets import get_preset
    from bench.plan.parallel import default_jobs

    if args.jobs is not None and args.jobs < 0:
        raise UsageError(f"--jobs {args.jobs}: expected 0 (one per core, at most 4) or more")
    jobs = default_jobs() if not args.jobs else args.jobs

    preset = get_preset(args.preset)
    st = settings_from_args(args, preset.dtype_on("cuda"))
    import logging

    logging.getLogger("bench").info("planning %s: %d method(s) and the evaluator, each simulated on the meta device "
                                    "(about 16 s for Gemma-2-9B on 2 cores; --fit and --compare-logits add more)", preset.name, len(st.methods))
    fitted = None
    if getattr(args, "fit", False):
        st, fitted = fit_settings(preset, st, args.world, max_rows_pinned=args.max_rows is not None)
    plan = make_plan(preset, st, world_dir=args.world, progress=not args.json, jobs=jobs)
    if args.json:
        d = plan.to_dict()
        if fitted is not None:
            d["fit"] = {"budget_gib": fitted.budget_gib, "options": fitted.options,
                        "predicted_peak_bytes": {m: f.peak for m, f in fitted.methods.items()}}
        print(json.dumps(d, indent=2, default=str))
    else:
        lines = [] if fitted is None else fitted.lines() + [
            f"{m}: planned at its configured options, not fitted (the fit covers the node methods; docs/edges.md)"
            for m in st.methods if m in EDGE_MODELLED]
        print(format_plan(plan) + ("" if fitted is None else "\n\nFitted to --gpu-memory (bench.plan.budget):\n"
                                   + "\n".join(f"- {line}" for line in lines)))
    return 0
