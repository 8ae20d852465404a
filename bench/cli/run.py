"""The commands that run the benchmark: ``all``, ``run``, ``sweep`` and ``control``.

Each turns its arguments into a :class:`bench.run.config.RunConfig` and hands it to the runner;
nothing here computes a number.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bench.errors import InputError, UsageError
from bench.run.config import config_from_run, parse_method_options
from bench.run.executors import executor_names

log = logging.getLogger("bench")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _run_options(p: argparse.ArgumentParser, default_out: str = "results") -> None:
    """The options of every command that runs cells, in argument groups."""
    g0 = p.add_argument_group("model and data")
    g0.add_argument("--preset", default="embedded", help="model+SAE preset name or TOML file (default: embedded)")
    g0.add_argument("--world", default=None, help="embedded-world directory (default: the shipped one)")
    g0.add_argument("--sites", default=None, help="SAE placement: comma list of the preset's SAE hooks to splice "
                   "(default: all), e.g. blocks.3.hook_resid_post")
    g0.add_argument("--seeds", default=None, help="comma list of seeds (default 0,1,2,3,4; quick: 0). A seed changes the data "
                   "draw, the train/test split and each method's randomness")
    g0.add_argument("--seed", type=int, default=None, help="one seed (same as --seeds N)")
    g0.add_argument("--n-train", type=int, default=None, help="train prompts per task and seed (default 128, or a task's own default: IOI 512; quick 64 for every task)")
    g0.add_argument("--n-test", type=int, default=None, help="test prompts per task and seed (default 128; quick 64)")
    g0.add_argument("--quick", action="store_true", help="smaller sweep, for a first look: one seed, 64 prompts, no reference methods (exact patching, greedy; add them with --methods), PNG figures only")
    g1 = p.add_argument_group("the setting")
    g1.add_argument("--error-policy", default="drop", metavar="{drop,keep,mean}", help="drop (paper), keep or mean")
    g1.add_argument("--ablation", default="mean", metavar="{mean,zero,counterfactual}", help="mean (paper), zero or counterfactual")
    g1.add_argument("--answers", default="task", metavar="{task,oriented,shuffled}", help="task (default), or a control: oriented (each prompt's answers "
                   "ordered so the spliced model prefers the first; with --preset embedded-random) or shuffled (each "
                   "prompt's two answers borrowed from other prompts of its case, never its own and absent from the "
                   "prompt, then oriented). See bench/run/controls.py and 'bench control'")
    g1.add_argument("--option", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="method option, e.g. binary_mask.steps=100 (JSON value); repeatable")
    g1.add_argument("--edge-node-method", default=None, metavar="METHOD",
                    help="edge methods: the node method whose ranking gives the edge universe (default integrated_gradients; "
                         "bench/run/edge_universe.py)")
    g1.add_argument("--edge-max-nodes", type=int, default=None, metavar="N",
                    help="edge methods: at most N nodes in the edge universe (default 48)")
    g2 = p.add_argument_group("device and memory")
    g2.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]; checked before the world loads")
    g2.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                    help="the model's and SAEs' dtype (default: the preset's; Gemma presets run in bfloat16 on CUDA)")
    g2.add_argument("--max-memory", type=float, default=None, metavar="GB",
                   help="memory budget in GiB: every method's batch-like options and --max-rows are fitted to it by "
                   "bench plan's model (bench/plan/budget.py); default: the device's memory when --device is cuda, none on CPU")
    g2.add_argument("--max-rows", type=int, default=None, help="rows per evaluation forward (memory bound; default "
                   "128 on CPU, where small batches run fastest (benchmarks/test_eval_rows.py), 1024 on CUDA; fitted to "
                   "the memory budget when there is one)")
    g2.add_argument("--deterministic", action="store_true", help="deterministic kernels: torch.use_deterministic_algorithms(True), and on CUDA CUBLAS_WORKSPACE_CONFIG=:4096:8")
    g3 = p.add_argument_group("execution")
    g3.add_argument("--executor", default="inline", choices=executor_names(), help="inline (default: one process), process (a fresh worker per cell) "
                   "or ray (cells as Ray tasks; pip install sae-circuit-bench[ray])")
    g3.add_argument("--jobs", type=int, default=1, help="cells at once (process: workers; ray: CPUs of a local instance); 0 = one per CPU")
    g3.add_argument("--ray-address", default=None, help="join an existing Ray cluster ('auto' or host:port) instead of starting one")
    g3.add_argument("--cell-timeout", type=float, default=None, help="seconds before a cell is stopped and recorded as failed (process, ray)")
    g3.add_argument("--cell-max-memory", type=float, default=None, metavar="MB",
                   help="memory limit per cell in MB: above it the cell is stopped and recorded as failed (process, ray)")
    g4 = p.add_argument_group("output")
    g4.add_argument("--out", default=default_out, help="results directory (default: %(default)s)")
    g4.add_argument("--no-figures", action="store_true", help="skip figures and report")
    g4.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_run_commands(sub) -> None:
    a = sub.add_parser("all", help="every method x every task on the preset -> results, figures, report")
    _run_options(a)
    a.set_defaults(func=cmd_all)

    r = sub.add_parser("run", help="a subset of methods and tasks")
    r.add_argument("--methods", required=True, type=_csv, help="comma list: names, module:Class or file.py:Class")
    r.add_argument("--tasks", required=True, type=_csv, help="comma list: names or .json/.jsonl task files")
    _run_options(r)
    r.set_defaults(func=cmd_run)

    sw = sub.add_parser("sweep", help="a grid of settings (error policy x ablation x SAE sites ...): one cached run "
                        "each, then the matched-size verdicts across the grid")
    sw.add_argument("--grid", required=True, help="TOML file of axes, each a list (see bench/studies/sweep.py), e.g. "
                    "examples/sweep_quick.toml. --no-figures skips each setting's own figures and report; the sweep's "
                    "table, report and figure are always written")
    sw.add_argument("--methods", default=None, type=_csv, help="comma list (default: every method, as 'all')")
    sw.add_argument("--tasks", default=None, type=_csv, help="comma list (default: every task, as 'all')")
    _run_options(sw, default_out="sweep")
    sw.set_defaults(func=cmd_sweep)

    ct = sub.add_parser("control", help="a control run with OUT's settings into OUT/controls/NAME (shuffled: answers "
                        "borrowed from other prompts; random: the random-weights world; basis: residual coordinates as "
                        "nodes); OUT's report then shows real vs control")
    ct.add_argument("name", help="shuffled, random (bench/run/controls.py) or basis (residual coordinates as nodes)")
    ct.add_argument("--out", default="results", help="the real run's results directory; the control repeats the settings "
                    "in its run.json (default: %(default)s)")
    ct.add_argument("--seeds", default=None, help="a subset of the real run's seeds (default: all of them); the report "
                    "then compares with the real run on those seeds only")
    for flag, kw in (("--no-figures", {"action": "store_true", "help": "skip the control's own figures and report"}),
                     ("--no-progress", {"action": "store_true"}), ("--deterministic", {"action": "store_true"}),
                     ("--executor", {"default": "inline", "choices": executor_names()}), ("--jobs", {"type": int, "default": 1}),
                     ("--ray-address", {"default": None}), ("--cell-timeout", {"type": float, "default": None}),
                     ("--cell-max-memory", {"type": float, "default": None, "metavar": "MB"})):
        ct.add_argument(flag, **kw)
    ct.set_defaults(func=cmd_control)


def _task_n_train(args: argparse.Namespace, tasks: tuple[str, ...]) -> dict[str, int]:
    """Tasks' own train sizes (e.g. IOI: 512), where the user gave no --n-train and the run is not --quick."""
    if args.n_train is not None or args.quick:
        return {}
    from bench.run.setup import task_train_sizes

    return task_train_sizes(tasks)


def _config(args: argparse.Namespace, tasks: tuple[str, ...] | None, methods: tuple[str, ...] | None):
    from bench.run.config import DEFAULT_TASKS, make_config
    from bench.run.setup import check_device

    check_device(args.device)  # before the memory budget reads the device
    seeds: tuple[int, ...] | None = None
    if args.seed is not None and args.seeds is not None:
        raise UsageError("give --seed or --seeds, not both")
    if args.seed is not None:
        seeds: tuple[int, ...] = (args.seed,)
    elif args.seeds is not None:
        try:
            seeds = tuple(int(x) for x in _csv(args.seeds))
        except ValueError:
            raise UsageError(f"--seeds {args.seeds!r}: expected a comma list of integers, e.g. 0,1,2") from None
    from bench.plan.budget import apply_budget

    tasks = tasks or DEFAULT_TASKS
    return apply_budget(make_config(
        args.quick, args.device, preset=args.preset, tasks=tasks, methods=methods or None,
        task_n_train=_task_n_train(args, tasks), error_policy=args.error_policy, ablation=args.ablation, seeds=seeds,
        n_train=args.n_train, n_test=args.n_test, method_options=parse_method_options(args.option), world_dir=args.world,
        max_rows=args.max_rows, sites=_csv(args.sites) if args.sites else (), answers=args.answers, dtype=args.dtype,
        edge_node_method=getattr(args, "edge_node_method", None), edge_max_nodes=getattr(args, "edge_max_nodes", None),
    ), args)


def _execute(args: argparse.Namespace, cfg) -> int:
    from bench.run.runner import run_benchmark

    if args.deterministic:
        from bench.run.setup import make_deterministic

        make_deterministic()
    table, failures = run_benchmark(
        cfg, args.out, progress=not args.no_progress, executor=args.executor, jobs=args.jobs, ray_address=args.ray_address,
        cell_timeout=args.cell_timeout, cell_max_memory_mb=args.cell_max_memory)
    log.info("results: %s (%d rows)", Path(args.out) / "results.parquet", len(table))
    if not args.no_figures:
        from bench.report.render import render_run

        # a --quick run is a first look: PNGs only (``bench figures --results DIR`` adds the PDFs)
        render_run(Path(args.out), Path(args.out) / "figures", formats=("png",) if cfg.quick else ("png", "pdf"))
    if failures:
        import sys

        for f in failures:
            print(f"error: failed cell: {f}", file=sys.stderr)
        print(f"error: {len(failures)} cell(s) failed; every other cell finished and is saved", file=sys.stderr)
        return 1
    return 0


def cmd_all(args: argparse.Namespace) -> int:
    return _execute(args, _config(args, None, None))


def cmd_run(args: argparse.Namespace) -> int:
    return _execute(args, _config(args, args.tasks, args.methods))


# name -> the settings it overrides. shuffled / random: answer controls (bench/run/controls.py); basis: the
# residual coordinates as nodes instead of SAE latents (bench/model/world/variants.py), real answers.
CONTROLS = {"shuffled": {"answers": "shuffled"}, "random": {"answers": "oriented", "preset": "embedded-random"},
            "basis": {"preset": "embedded-basis"}}


def cmd_control(args: argparse.Namespace) -> int:
    """Run control NAME with the real run's settings (OUT/run.json) into OUT/controls/NAME, then
    rewrite OUT's report with the real-vs-control table."""
    import dataclasses

    from bench.errors import did_you_mean

    if args.name not in CONTROLS:
        raise UsageError(did_you_mean(args.name, tuple(CONTROLS), "control"))
    real = Path(args.out)
    run_json = real / "run.json"
    if not run_json.is_file() or not (real / "results.parquet").is_file():
        raise InputError(f"{real}: no finished run here (run.json or results.parquet missing); run "
                         f"'python -m bench all --out {real}' first: a control repeats that run's settings")
    base = config_from_run(run_json)
    if base.answers != "task":
        raise InputError(f"{run_json}: this run is itself a control (answers {base.answers!r}); give the real run's directory")
    if "preset" in CONTROLS[args.name] and base.preset != "embedded":
        raise InputError(f"{run_json}: control {args.name!r} is a variant of the embedded world; this run used preset "
                         f"{base.preset!r}")
    over = dict(CONTROLS[args.name])
    if args.seeds is not None:
        try:
            seeds = tuple(int(x) for x in _csv(args.seeds))
        except ValueError:
            raise UsageError(f"--seeds {args.seeds!r}: expected a comma list of integers") from None
        if not seeds or not set(seeds) <= set(base.seeds):
            raise UsageError(f"--seeds {args.seeds!r}: must be a subset of the real run's seeds {list(base.seeds)}")
        over["seeds"] = seeds
    cfg = dataclasses.replace(base, **over)
    args.out = str(real / "controls" / args.name)
    rc = _execute(args, cfg)
    from bench.report.render import write_page
    from bench.report.write import write_report
    from bench.run.results import load_results

    log.info("report with controls: %s", write_report(load_results(real), real, real / "figures"))
    write_page(real)
    return rc


def cmd_sweep(args: argparse.Namespace) -> int:
    from bench.studies.sweep import run_sweep

    return run_sweep(args, _config(args, args.tasks, args.methods))
