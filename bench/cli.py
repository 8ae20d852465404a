"""Command line: ``python -m bench {all,run,figures,train,ls,check,plan}``.

Usage errors exit with code 2 and one line on stderr; a run in which some cell failed exits with
code 1 after every other cell has finished and been saved.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from bench.errors import BenchError, InputError, UsageError, did_you_mean

log = logging.getLogger("bench")


def _environment() -> None:
    # No network but package registries: never let a library wait on hub retries.
    if os.environ.get("BENCH_ONLINE") != "1":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*HookedTransformer.*")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m bench", description="SAE-latent circuit discovery benchmark")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="build the embedded world (model + SAEs) from scratch")
    t.add_argument("--out", default=None, help="world directory (default: the shipped bench/world/embedded)")
    t.add_argument("--tiny", action="store_true", help="a seconds-long toy world (for tests)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--variant", default=None, help="build only this variant of the existing world: lossy, basis, "
                   "random or all (bench/world/variants.py). Without it, the world and then every variant are built")

    from bench.commands import add_run_commands

    add_run_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    _environment()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
    )
    for noisy in ("sae_lens", "transformer_lens", "httpx", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; finished cells are saved, rerun to resume", file=sys.stderr)
        return 130


def cmd_train(args: argparse.Namespace) -> int:
    import json
    from dataclasses import replace

    from bench.world.artifacts import EMBEDDED_DIR
    from bench.world.build import WorldConfig, build_world

    from bench.world.variants import VARIANTS, VariantConfig, build_variant

    out = Path(args.out or EMBEDDED_DIR)
    if args.variant is not None:
        names = VARIANTS if args.variant == "all" else (args.variant,)
        if any(n not in VARIANTS for n in names):
            raise UsageError(did_you_mean(args.variant, VARIANTS + ("all",), "world variant"))
        if not (out / "world.json").is_file():
            raise InputError(f"{out}: no world to derive variants from (world.json missing); run 'python -m bench train'")
    else:
        cfg = WorldConfig.tiny() if args.tiny else WorldConfig()
        if args.seed:
            cfg = replace(cfg, model=replace(cfg.model, seed=args.seed), saes=replace(cfg.saes, seed=args.seed))
        stats = build_world(cfg, out, progress=True)
        summary = {t: {"acc": round(q["model"]["pairwise_accuracy"], 3), "LD": round(q["model"]["logit_diff"], 2),
                       "kept": round(q["logit_diff_kept_fraction"], 3)} for t, q in stats["quality_held_out"].items()}
        print(json.dumps({"world": str(out), "seconds": round(stats["total_seconds"], 1), "tasks": summary,
                          "sae_fvu": {h: round(s["fvu"], 4) for h, s in stats["saes"].items()}}, indent=2))
        names = () if args.tiny else VARIANTS
    for name in names:
        v = build_variant(name, out, VariantConfig())
        print(json.dumps({"variant": name, "seconds": round(v["seconds"], 1),
                          "tasks": {t: {"acc": round(q["model"]["pairwise_accuracy"], 3), "LD": round(q["model"]["logit_diff"], 2),
                                        "kept": round(q["logit_diff_kept_fraction"], 3)}
                                    for t, q in v["quality_held_out"].items()}}, indent=2))
    return 0
