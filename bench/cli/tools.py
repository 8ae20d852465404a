"""The commands around a run: ``figures``, ``labels``, ``accuracy``, ``adversarial``, ``ls`` and ``check``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bench.errors import InputError, UsageError
from bench.run.config import config_from_run, parse_method_options

log = logging.getLogger("bench")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def add_tool_commands(sub) -> None:
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

    c = sub.add_parser("check", help="run the public method contract on a method")
    c.add_argument("name", help="registered name, module:Class or file.py:Class")
    c.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="method option (JSON value)")
    c.set_defaults(func=cmd_check)


def cmd_figures(args: argparse.Namespace) -> int:
    from bench.report.render import render_run

    results = Path(args.results)
    render_run(results, Path(args.out) if args.out else results / "figures")
    return 0


def cmd_labels(args: argparse.Namespace) -> int:
    """Labels for the world a results directory was run on (its run.json), then figures and report."""
    from bench.report.render import render_run
    from bench.run.labels import write_labels
    from bench.run.runner import world_for

    results = Path(args.results)
    run_json = results / "run.json"
    if not run_json.is_file():
        raise InputError(f"{run_json}: no run here; run 'python -m bench all --out {results}' first")
    cfg = config_from_run(run_json)
    world = world_for(cfg)  # the run's own world and SAE sites; labels switch to the true residual themselves
    log.info("labels: %s", write_labels(world, results, cfg))
    render_run(results, results / "figures")
    return 0


def cmd_accuracy(args: argparse.Namespace) -> int:
    from bench.run.config import DEFAULT_TASKS
    from bench.studies.accuracy import format_table, run_accuracy

    rows = run_accuracy(args.preset, args.tasks or DEFAULT_TASKS, Path(args.json) if args.json else None,
                        provenance=not args.no_provenance)
    print(format_table(rows))
    print("acc: pairwise accuracy of the model; acc drop: with every SAE spliced, error dropped; kept: LD kept so; "
          "seen in training: distinct prompts (clean and patch) that were a training prompt or the start of a "
          "training text of the model or its SAEs")
    return 1 if any("error" in r for r in rows) else 0


def cmd_adversarial(args: argparse.Namespace) -> int:
    from bench.studies.adversarial import run_adversarial

    if args.n < 1:
        raise UsageError(f"--n {args.n}: give at least 1 prompt per family")
    run_adversarial(args.preset, Path(args.out), n=args.n, seed=args.seed)
    print((Path(args.out) / "adversarial_dict.md").read_text())
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from bench import registry
    from bench.model.presets import builtin_presets

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
    from bench.errors import MethodFailure
    from bench.registry import PluginLoadError
    from bench.run.setup import check_method_options, method_class
    from bench.testing import run_checks

    try:
        cls = method_class(args.name)
    except (PluginLoadError, MethodFailure) as exc:
        raise UsageError(str(exc)) from None
    if getattr(cls, "unit", "nodes") == "edges":
        raise UsageError(f"bench check {args.name}: the contract's checks are for node methods; edge methods are "
                         "tested by tests/test_edge_methods.py (docs/edges.md)")
    opts = parse_method_options([f"{cls.name or 'm'}.{o}" for o in args.option]).get(cls.name or "m", {})
    check_method_options(args.name, cls, opts)
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
