"""Where the seconds of a run go: ``bench all`` (or any bench command) under cProfile, summarised per stage.

    python benchmarks/profile_run.py --json OUT.json --md OUT.md -- all --out DIR [bench options]

Stages are the cumulative time of the functions that do each part of a run (an inline run: every
cell in this process): loading the world, each task's setup (tokens, split, ablation values,
candidates, evaluator), each method's ``discover`` (by module), the evaluation of circuits (train and
test, complements), knockouts, the rows, the latent labels, the figures and the report. Stages can
nest (a method's ``discover`` calls the spliced model; the evaluation calls it too), so the shares do
not add up to 100% by design: each says how long that part took, all included. The raw profile is
written beside the JSON (``.prof``) for ``python -m pstats`` or snakeviz.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path

# stage -> (file suffix, function name) of the functions whose cumulative time is that stage
STAGES = {
    "load the world": [("bench/model/loading.py", "load_world")],
    "task setup (tokens, split, ablation, candidates, evaluator)": [("bench/run/setup.py", "setup_task")],
    "evaluate circuits (train and test, complements)": [("bench/run/cell.py", "evaluate_circuits")],
    "knockout": [("bench/eval/evaluate.py", "knockout")],
    "reference rows": [("bench/run/rows.py", "reference_rows")],
    "latent labels": [("bench/run/labels.py", "write_labels")],
    "figures": [("figures/registry.py", "render_all")],
    "report (md, csv, html)": [("bench/report/write.py", "write_report"), ("bench/report/render.py", "write_page")],
}


def summarise(stats: pstats.Stats, wall: float) -> list[dict]:
    rows = []
    table = stats.stats  # (file, line, name) -> (cc, nc, tt, ct, callers)

    def cumulative(pairs) -> tuple[float, int]:
        total, calls = 0.0, 0
        for (file, _line, name), (_cc, nc, _tt, ct, _callers) in table.items():
            if any(file.replace("\\", "/").endswith(suffix) and name == fn for suffix, fn in pairs):
                total += ct
                calls += nc
        return total, calls

    for stage, pairs in STAGES.items():
        seconds, calls = cumulative(pairs)
        rows.append({"stage": stage, "seconds": round(seconds, 2), "calls": calls, "share_of_wall": round(seconds / wall, 3)})
    # each method's discover, by its module (the suite's methods and any plugin's)
    for (file, _line, name), (_cc, nc, _tt, ct, _callers) in sorted(table.items()):
        f = file.replace("\\", "/")
        if name == "discover" and "/methods/" in f:
            rows.append({"stage": f"discover: {Path(f).stem}", "seconds": round(ct, 2), "calls": nc,
                         "share_of_wall": round(ct / wall, 3)})
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print("usage: profile_run.py --json OUT.json [--md OUT.md] -- BENCH_COMMAND [ARGS]", file=sys.stderr)
        return 2
    split = argv.index("--")
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True, type=Path)
    ap.add_argument("--md", type=Path, default=None)
    args = ap.parse_args(argv[:split])
    bench_argv = argv[split + 1:]

    from bench.cli.main import main as bench_main

    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    try:
        rc = bench_main(bench_argv)
    finally:
        profiler.disable()
    wall = time.perf_counter() - t0
    args.json.parent.mkdir(parents=True, exist_ok=True)
    prof = args.json.with_suffix(".prof")
    profiler.dump_stats(str(prof))
    rows = summarise(pstats.Stats(str(prof)), wall)
    out = {"command": "python -m bench " + " ".join(bench_argv), "exit_code": rc, "wall_seconds": round(wall, 1),
           "stages": rows, "note": "cumulative seconds per stage; stages nest, shares need not add to 1"}
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    if args.md:
        lines = [f"# Profile of `{out['command']}`", "", f"Wall time under cProfile: {out['wall_seconds']} s (exit {rc}). "
                 "Cumulative seconds per stage; stages nest (a method's discover and the evaluation both run the "
                 "spliced model), so the shares need not add up to 100%.", "",
                 "| stage | seconds | calls | share of wall |", "|---|---:|---:|---:|"]
        lines += [f"| {r['stage']} | {r['seconds']:.1f} | {r['calls']} | {100 * r['share_of_wall']:.1f}% |" for r in rows]
        args.md.write_text("\n".join(lines) + "\n")
    print(json.dumps({k: out[k] for k in ("command", "exit_code", "wall_seconds")}))
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
