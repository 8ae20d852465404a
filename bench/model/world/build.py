"""``python -m bench train``: build the embedded world from nothing, seeded.

Tokenizer -> model trained on the task mixture -> TopK SAEs (SAELens trainer) at the preset's
residual hooks -> measured quality (held-out accuracy and logit difference, SAE FVU, logit
difference kept with every SAE spliced and the error dropped) -> ``world.json``.
"""

from __future__ import annotations

import json
import logging
import platform
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from bench.model.world.train_model import ModelTrainConfig, text_fingerprint, train_model
from bench.model.world.train_saes import SAETrainConfig, train_saes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines the embedded world."""

    model: ModelTrainConfig = field(default_factory=ModelTrainConfig)
    saes: SAETrainConfig = field(default_factory=SAETrainConfig)
    n_eval: int = 400
    eval_seed: int = 12345

    @staticmethod
    def tiny() -> WorldConfig:
        """A seconds-long world for tests: same code path, toy sizes."""
        return WorldConfig(
            model=ModelTrainConfig(n_layers=2, d_model=32, n_heads=2, d_mlp=64, steps=30, batch_size=16),
            saes=SAETrainConfig(layers=(0, 1), d_sae=64, k=4, steps=30, batch_size=256, n_prompts=200),
            n_eval=32,
        )


def build_world(cfg: WorldConfig, out_dir: str | Path, progress: bool = False) -> dict:
    """Train and write a world to ``out_dir`` (replaced atomically); return its stats."""
    from bench.model.world.artifacts import file_hashes, save_model
    from bench.model.world.corpus import vocabulary_texts
    from bench.model.world.tokenizer import build_tokenizer

    out_dir = Path(out_dir)
    t_start = time.perf_counter()
    torch.manual_seed(cfg.model.seed)
    staging = Path(tempfile.mkdtemp(prefix=".world-", dir=out_dir.parent if out_dir.parent.exists() else None))
    try:
        tokenizer = build_tokenizer(vocabulary_texts(), staging / "tokenizer")
        model, model_stats = train_model(cfg.model, tokenizer, progress=progress)
        save_model(model, cfg.model.tl_config_kwargs(len(tokenizer)), staging / "model")

        texts = sae_texts(cfg.saes)
        saes, sae_stats = train_saes(model, tokenizer, texts, cfg.saes, model_name=model.cfg.model_name)
        for hook, sae in saes.items():
            sae.save_model(str(staging / "saes" / hook))

        quality = world_quality(model, saes, tokenizer, cfg.n_eval, cfg.eval_seed)
        stats = {
            "config": asdict(cfg),
            "model": model_stats,
            "saes": sae_stats,
            "sae_texts": {"n_texts": len(texts), "texts_sha256": text_fingerprint((t, None) for t in texts)},
            "holdout": "v1: benchmark prompts held out of every training stream (tasks/holdout.py)",
            "quality_held_out": quality,
            "n_eval_records_per_task": cfg.n_eval,
            "eval_seed": cfg.eval_seed,
            "total_seconds": time.perf_counter() - t_start,
            "versions": _versions(),
            "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads()},
        }
        stats["file_hashes"] = file_hashes(staging)
        (staging / "world.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return stats


def sae_texts(cfg) -> list[str]:
    """The prompts SAEs are trained on (``cfg``: a SAETrainConfig): samples of the training mixture.

    Before the hold-out (``world.json``'s ``holdout`` key) the benchmark's own clean and corrupted
    prompts of seed 0 were added here; now they are held out (``tasks.holdout``): the SAEs see the same task families, never the
    benchmark's prompts.
    """
    from bench.model.world.corpus import sample_text

    rng = random.Random(f"sae-texts:{cfg.seed}")
    return [p for p, _ in (sample_text(rng) for _ in range(cfg.n_prompts))]


def world_quality(model, saes: dict, tokenizer, n_eval: int, eval_seed: int) -> dict:
    """Per task, on held-out records: the model's accuracy and logit difference, the same with every
    SAE spliced and the error term dropped, and the fraction of the logit difference kept."""
    from bench.model.spliced import SplicedModel
    from bench.model.world.corpus import seed_tasks
    from bench.model.world.quality import task_quality

    spliced = SplicedModel(model, saes, "drop")
    quality = {}
    for task in seed_tasks():
        records = task.records(n_eval, seed=eval_seed)
        full = task_quality(model, tokenizer, records)
        drop = task_quality(spliced.run, tokenizer, records)
        quality[task.name] = {
            "model": full, "spliced_drop_error": drop,
            "logit_diff_kept_fraction": drop["logit_diff"] / full["logit_diff"] if full["logit_diff"] else float("nan"),
        }
        log.info("%s: model acc %.3f LD %.2f | spliced LD %.2f (%.0f%% kept)", task.name,
                 full["pairwise_accuracy"], full["logit_diff"], drop["logit_diff"],
                 100 * quality[task.name]["logit_diff_kept_fraction"])
    return quality


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformer-lens", "sae-lens", "captum", "tokenizers", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out
