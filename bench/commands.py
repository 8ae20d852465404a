"""The benchmark subcommands: ``all``, ``run``, ``figures``, ``ls``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from bench.errors import InputError, UsageError

log = logging.getLogger("bench")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _run_options(p: argparse.ArgumentParser, default_out: str = "results") -> None:
    p.add_argument("--out", default=default_out, help="results directory (default: %(default)s)")
    p.add_argument("--preset", default="embedded", help="model+SAE preset name or TOML file (default: embedded)")
    p.add_argument("--world", default=None, help="embedded-world directory (default: the shipped one)")
    p.add_argument("--error-policy", default="drop", help="drop (paper), keep or mean")
    p.add_argument("--ablation", default="mean", help="mean (paper), zero or counterfactual")
    p.add_argument("--seeds", default=None, help="comma list of seeds (default 0,1,2; quick: 0). A seed changes the data "
                   "draw, the train/test split and each method's randomness")
    p.add_argument("--seed", type=int, default=None, help="one seed (same as --seeds N)")
    p.add_argument("--sites", default=None, help="SAE placement: comma list of the preset's SAE hooks to splice "
                   "(default: all), e.g. blocks.3.hook_resid_post")
    p.add_argument("--answers", default="task", help="task (default), or a control: oriented (each prompt's answers "
                   "ordered so the model prefers the first; with --preset embedded-random) or shuffled (answer pairs "
                   "permuted across prompts, then oriented). See bench/controls.py and 'bench control'")
    p.add_argument("--max-rows", type=int, default=None, help="rows per evaluation forward (memory bound; default "
                   "128 on CPU, where small batches run fastest (benchmarks/test_eval_rows.py), 1024 on CUDA; fitted to "
                   "the memory budget when there is one)")
    p.add_argument("--max-memory", type=float, default=None, metavar="GB",
                   help="memory budget in GiB: every method's batch-like options and --max-rows are fitted to it by "
                   "bench plan's model (bench/budget.py); default: the device's memory when --device is cuda, none on CPU")
    p.add_argument("--n-train", type=int, default=None, help="train prompts per task and seed (default 128, or a task's own default: IOI 512; quick 64 for every task)")
    p.add_argument("--n-test", type=int, default=None, help="test prompts per task and seed (default 128; quick 64)")
    p.add_argument("--quick", action="store_true", help="smaller sweep, for a first look")
    p.add_argument("--option", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="method option, e.g. binary_mask.steps=100 (JSON value); repeatable")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-figures", action="store_true", help="skip figures and report")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms(True)")
    p.add_argument("--executor", default="inline", help="inline (default: one process), process (a fresh worker per cell) "
                   "or ray (cells as Ray tasks; pip install sae-circuit-bench[ray])")
    p.add_argument("--jobs", type=int, default=1, help="cells at once (process: workers; ray: CPUs of a local instance); 0 = one per CPU")
    p.add_argument("--ray-address", default=None, help="join an existing Ray cluster ('auto' or host:port) instead of starting one")
    p.add_argument("--cell-timeout", type=float, default=None, help="seconds before a cell is stopped and recorded as failed (process, ray)")
    p.add_argument("--cell-max-memory", type=float, default=None, metavar="MB",
                   help="memory limit per cell in MB: above it the cell is stopped and recorded as failed (process, ray)")


def add_run_commands(sub) -> None:
    from bench import cli

    sub.choices["train"].set_defaults(func=cli.cmd_train)

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
    sw.add_argument("--grid", required=True, help="TOML file of axes, each a list (see bench/sweep.py), e.g. "
                    "examples/sweep_quick.toml. --no-figures skips each setting's own figures and report; the sweep's "
                    "table, report and figure are always written")
    sw.add_argument("--methods", default=None, type=_csv, help="comma list (default: every method, as 'all')")
    sw.add_argument("--tasks", default=None, type=_csv, help="comma list (default: every task, as 'all')")
    _run_options(sw, default_out="sweep")
    sw.set_defaults(func=cmd_sweep)

    ct = sub.add_parser("control", help="a control run with OUT's settings into OUT/controls/NAME (shuffled: answers "
                        "borrowed from other prompts; random: the random-weights world; basis: residual coordinates as "
                        "nodes); OUT's report then shows real vs control")
    ct.add_argument("name", help="shuffled, random (bench/controls.py) or basis (residual coordinates as nodes)")
    ct.add_argument("--out", default="results", help="the real run's results directory; the control repeats the settings "
                    "in its run.json (default: %(default)s)")
    ct.add_argument("--seeds", default=None, help="a subset of the real run's seeds (default: all of them); the report "
                    "then compares with the real run on those seeds only")
    for flag, kw in (("--no-figures", {"action": "store_true", "help": "skip the control's own figures and report"}),
                     ("--no-progress", {"action": "store_true"}), ("--deterministic", {"action": "store_true"}),
                     ("--executor", {"default": "inline"}), ("--jobs", {"type": int, "default": 1}),
                     ("--ray-address", {"default": None}), ("--cell-timeout", {"type": float, "default": None}),
                     ("--cell-max-memory", {"type": float, "default": None, "metavar": "MB"})):
        ct.add_argument(flag, **kw)
    ct.set_defaults(func=cmd_control)

    lb = sub.add_parser("labels", help="compute the latent labels of a finished run's world (latent_labels.parquet; "
                        "bench all writes them itself) and redraw its figures and report")
    lb.add_argument("--results", default="results", help="results directory (default: %(default)s)")
    lb.set_defaults(func=cmd_labels)

    ac = sub.add_parser("accuracy", help="can the world do these tasks? pairwise accuracy and logit difference of the "
                        "model and of the spliced model (error dropped), and how many prompts it was trained on")
    ac.add_argument("--tasks", default=None, type=_csv, help="comma list: names or .json/.jsonl task files "
                    "(default: the four built-in tasks)")
    ac.add_argument("--preset", default="embedded")
    ac.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ac.add_argument("--no-provenance", action="store_true", help="skip replaying the world's training stream "
                    "(about ten seconds) to count prompts seen in training")
    ac.set_defaults(func=cmd_accuracy)

    ad = sub.add_parser("adversarial", help="test the dict circuit's hypothesis: prompts whose queried name is a "
                        "value, not a key (the paper's adversarial prompt), with controls -> OUT/adversarial_dict.json|md")
    ad.add_argument("--preset", default="embedded")
    ad.add_argument("--out", default="results")
    ad.add_argument("--n", type=int, default=200, help="prompts per family (default: %(default)s)")
    ad.add_argument("--seed", type=int, default=0)
    ad.set_defaults(func=cmd_adversarial)

    f = sub.add_parser("figures", help="redraw every figure and the report from stored rows (no model run)")
    f.add_argument("--results", default="results", help="results directory (default: %(default)s)")
    f.add_argument("--out", default=None, help="figure directory (default: RESULTS/figures)")
    f.set_defaults(func=cmd_figures)

    ls = sub.add_parser("ls", help="list methods, tasks and presets")
    ls.set_defaults(func=cmd_ls)

    from bench.plan import add_plan_command

    add_plan_command(sub)

    c = sub.add_parser("check", help="run the public method contract on a method")
    c.add_argument("name", help="registered name, module:Class or file.py:Class")
    c.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="method option (JSON value)")
    c.set_defaults(func=cmd_check)


def _parse_options(items: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        method, dot, opt = key.partition(".")
        if not eq or not dot or not opt:
            raise UsageError(f"--option {item!r}: expected METHOD.KEY=VALUE, e.g. binary_mask.steps=100")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(method, {})[opt] = value
    return out


def _default_max_rows(device: str) -> int:
    """Rows per evaluation forward: results do not depend on it, only speed and memory. On CPU a
    forward of 128 rows scores ~1.8x more rows per second than one of 1024 (two cores, embedded
    world; benchmarks/eval_rows.json); accelerators want large batches."""
    return 128 if str(device).startswith("cpu") else 1024


def _task_n_train(args: argparse.Namespace, tasks: tuple[str, ...]) -> dict[str, int]:
    """Tasks' own train sizes (e.g. IOI: 512), where the user gave no --n-train and the run is not --quick."""
    if args.n_train is not None or args.quick:
        return {}
    from bench.harness import load_task

    out = {}
    for name in tasks:
        try:
            n = getattr(load_task(name), "n_train", None)
        except Exception:  # noqa: BLE001 - a bad task is reported by the run itself, with its one line
            continue
        if n:
            out[name] = int(n)
    return out


def _config(args: argparse.Namespace, tasks: tuple[str, ...] | None, methods: tuple[str, ...] | None):
    from bench.harness import DEFAULT_METHODS, DEFAULT_TASKS, RunConfig

    n_train = args.n_train if args.n_train is not None else (64 if args.quick else 128)
    n_test = args.n_test if args.n_test is not None else (64 if args.quick else 128)
    if args.seed is not None and args.seeds is not None:
        raise UsageError("give --seed or --seeds, not both")
    if args.seed is not None:
        seeds: tuple[int, ...] = (args.seed,)
    elif args.seeds is not None:
        try:
            seeds = tuple(int(x) for x in _csv(args.seeds))
        except ValueError:
            raise UsageError(f"--seeds {args.seeds!r}: expected a comma list of integers, e.g. 0,1,2") from None
    else:
        seeds = (0,) if args.quick else (0, 1, 2)
    from bench.budget import apply_budget

    tasks = tasks or DEFAULT_TASKS
    return apply_budget(RunConfig(
        preset=args.preset, tasks=tasks, methods=methods or DEFAULT_METHODS, task_n_train=_task_n_train(args, tasks),
        error_policy=args.error_policy, ablation=args.ablation, seeds=seeds, n_train=n_train, n_test=n_test,
        grid_per_decade=3 if args.quick else 5, n_knockout=4, quick=args.quick,
        # quick: train F and knockout on 32 prompts (the full run: 64), to stay a first look
        n_train_eval=32 if args.quick else 64, n_knockout_prompts=32 if args.quick else 64,
        method_options=_parse_options(args.option), world_dir=args.world, device=args.device,
        max_rows=_default_max_rows(args.device) if args.max_rows is None else args.max_rows, sites=_csv(args.sites) if args.sites else (),
        answers=args.answers,
    ), args)


def _execute(args: argparse.Namespace, cfg) -> int:
    from bench.runner import run_benchmark

    if args.deterministic:
        import torch

        torch.use_deterministic_algorithms(True)
    table, failures, input_errors = run_benchmark(
        cfg, args.out, progress=not args.no_progress, executor=args.executor, jobs=args.jobs, ray_address=args.ray_address,
        cell_timeout=args.cell_timeout, cell_max_memory_mb=args.cell_max_memory)
    log.info("results: %s (%d rows)", Path(args.out) / "results.parquet", len(table))
    if not args.no_figures:
        _figures_and_report(Path(args.out), Path(args.out) / "figures")
    if failures:
        import sys

        for f in failures:
            print(f"error: failed cell: {f}", file=sys.stderr)
        print(f"error: {len(failures)} cell(s) failed; every other cell finished and is saved", file=sys.stderr)
        return 2 if input_errors else 1
    return 0


def cmd_all(args: argparse.Namespace) -> int:
    return _execute(args, _config(args, None, None))


def cmd_run(args: argparse.Namespace) -> int:
    return _execute(args, _config(args, args.tasks, args.methods))


# name -> the settings it overrides. shuffled / random: answer controls (bench/controls.py); basis: the
# residual coordinates as nodes instead of SAE latents (bench/world/variants.py), real answers.
CONTROLS = {"shuffled": {"answers": "shuffled"}, "random": {"answers": "oriented", "preset": "embedded-random"},
            "basis": {"preset": "embedded-basis"}}


def config_from_run(run_json: Path):
    """The RunConfig a finished run recorded in its run.json (one line naming the file if unreadable)."""

    from bench.harness import RunConfig

    try:
        raw = json.loads(run_json.read_text())["config"]
        fields = RunConfig.__dataclass_fields__
        return RunConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in fields})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{run_json}: cannot read the run's settings ({type(exc).__name__}: {exc})") from None


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
    from bench.report import write_report
    from bench.results import load_results

    log.info("report with controls: %s", write_report(load_results(real), real, real / "figures"))
    return rc


def cmd_sweep(args: argparse.Namespace) -> int:
    from bench.sweep import run_sweep

    return run_sweep(args, _config(args, args.tasks, args.methods))


def _figures_and_report(results: Path, fig_dir: Path) -> None:
    from bench.report import write_report
    from bench.results import load_results
    from figures import render_all

    from bench.labels import load_labels

    df = load_results(results)
    labels = load_labels(results)
    if labels is None:
        log.warning("%s: no latent labels, so the case-study figures name latents by index only; "
                    "'python -m bench labels --results %s' computes them and redraws", results, results)
    written = render_all(df, fig_dir, labels)
    report = write_report(df, results, fig_dir)
    log.info("figures: %d files in %s; report: %s", len(written), fig_dir, report)


def cmd_figures(args: argparse.Namespace) -> int:
    results = Path(args.results)
    _figures_and_report(results, Path(args.out) if args.out else results / "figures")
    return 0


def cmd_labels(args: argparse.Namespace) -> int:
    """Labels for the world a results directory was run on (its run.json), then figures and report."""
    from bench.labels import write_labels
    from bench.runner import world_for

    results = Path(args.results)
    run_json = results / "run.json"
    if not run_json.is_file():
        raise InputError(f"{run_json}: no run here; run 'python -m bench all --out {results}' first")
    cfg = config_from_run(run_json)
    world = world_for(cfg)  # the run's own world and SAE sites; labels switch to the true residual themselves
    log.info("labels: %s", write_labels(world, results, cfg))
    _figures_and_report(results, results / "figures")
    return 0


def cmd_accuracy(args: argparse.Namespace) -> int:
    from bench.accuracy import format_table, run_accuracy
    from bench.harness import DEFAULT_TASKS

    rows = run_accuracy(args.preset, args.tasks or DEFAULT_TASKS, Path(args.json) if args.json else None,
                        provenance=not args.no_provenance)
    print(format_table(rows))
    print("acc: pairwise accuracy of the model; acc drop: with every SAE spliced, error dropped; kept: LD kept so; "
          "seen in training: distinct prompts (clean and patch) that were a training prompt or the start of a "
          "training text of the model or its SAEs")
    return 1 if any("error" in r for r in rows) else 0


def cmd_adversarial(args: argparse.Namespace) -> int:
    from bench.adversarial import run_adversarial

    if args.n < 1:
        raise UsageError(f"--n {args.n}: give at least 1 prompt per family")
    run_adversarial(args.preset, Path(args.out), n=args.n, seed=args.seed)
    print((Path(args.out) / "adversarial_dict.md").read_text())
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from bench import registry
    from bench.presets import builtin_presets

    for kind in ("method", "task"):
        status = registry.check_all(kind)
        print(f"{kind}s:")
        for name, e in registry.entries(kind).items():
            state = "ok" if status[name] is None else f"FAILED TO LOAD: {status[name]}"
            print(f"  {name:<24} {e.package} {e.version}  [{state}]")
    if not registry.plugins_enabled():
        print("(third-party plugins are switched off: BENCH_NO_PLUGINS is set)")
    print("presets:")
    for name, p in builtin_presets().items():
        print(f"  {name:<24} {p.description}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from bench import registry
    from bench.testing import run_checks
    from bench.api import Method

    try:
        cls = registry.load("method", args.name)
    except registry.PluginLoadError as exc:
        raise UsageError(str(exc)) from None
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise UsageError(f"{args.name!r} is not a subclass of bench.api.Method")
    opts = _parse_options([f"{cls.name or 'm'}.{o}" for o in args.option]).get(cls.name or "m", {})
    try:
        method = cls(**opts)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"method {args.name!r}: bad option(s) {opts}: {exc}") from None
    results = run_checks(method)
    for name, status, reason in results:
        print(f"{status:<5} {name}" + (f": {reason}" if reason else ""))
    failed = [r for r in results if r[1] in ("FAIL", "XPASS")]
    xfailed = [r for r in results if r[1] == "xfail"]
    print(f"{len(results) - len(failed) - len(xfailed)} passed, {len(failed)} failed, {len(xfailed)} expected failures")
    return 1 if failed else 0
