"""``python -m bench train``: build the embedded world (model + SAEs) and its variants from scratch."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from bench.errors import InputError, UsageError, did_you_mean


def add_train_command(sub) -> None:
    t = sub.add_parser("train", help="build the embedded world (model + SAEs) from scratch")
    t.add_argument("--out", default=None, help="world directory (default: the shipped bench/model/world/embedded)")
    t.add_argument("--tiny", action="store_true", help="a seconds-long toy world (for tests)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--variant", default=None, help="build only this variant of the existing world: lossy, basis, "
                   "random or all (bench/model/world/variants.py). Without it, the world and then every variant are built")
    t.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from bench.model.world.artifacts import EMBEDDED_DIR
    from bench.model.world.build import WorldConfig, build_world
    from bench.model.world.variants import VARIANTS, VariantConfig, build_variant

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
