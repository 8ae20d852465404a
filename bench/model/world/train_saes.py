"""Train the embedded world's residual-stream SAEs with SAELens's own trainer.

``sae_lens.SAETrainer`` takes any iterator of activation batches; we feed it residual activations
of the trained model on prompts of the task mixture, never the benchmark's own (BOS
excluded: the spliced model passes BOS through unchanged, as the paper does). The result is an
inference ``TopKSAE`` saved in SAELens's on-disk format (``cfg.json`` + ``sae_weights.safetensors``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SAETrainConfig:
    """Where the SAEs go and how they are trained (defaults = the shipped world)."""

    layers: tuple[int, ...] = (1, 3, 5)
    d_sae: int = 512
    k: int = 20
    steps: int = 3000
    batch_size: int = 1024
    lr: float = 1e-3
    n_prompts: int = 6000
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("at least one SAE layer is required")
        if self.k > self.d_sae:
            raise ValueError(f"k={self.k} exceeds d_sae={self.d_sae}")


def hook_name(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_post"


@torch.no_grad()
def collect_activations(model, token_batches: list[torch.Tensor], pad_id: int, hooks: list[str]) -> dict[str, torch.Tensor]:
    """Residual activations ``[n_tokens, d_model]`` at each hook, padding and BOS dropped."""
    out: dict[str, list[torch.Tensor]] = {h: [] for h in hooks}
    for tokens in token_batches:
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in hooks)
        keep = tokens != pad_id
        keep[:, 0] = False
        for h in hooks:
            out[h].append(cache[h][keep])
    return {h: torch.cat(v) for h, v in out.items()}


def batches_forever(acts: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Shuffled mini-batches, reshuffled every epoch (the trainer pulls as many as it needs)."""
    g = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(len(acts), generator=g)
        for i in range(0, len(perm) - batch_size + 1, batch_size):
            yield acts[perm[i : i + batch_size]]


def fraction_of_variance_unexplained(sae, acts: torch.Tensor) -> float:
    with torch.no_grad():
        recon = sae.decode(sae.encode(acts))
        return ((acts - recon).pow(2).sum() / (acts - acts.mean(0)).pow(2).sum()).item()


def train_saes(model, tokenizer, texts: list[str], cfg: SAETrainConfig, model_name: str) -> tuple[dict, dict]:
    """Train one TopK SAE per layer; return ``({hook: inference SAE}, {hook: stats})``."""
    from sae_lens import SAE, SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(cfg.seed)
    pad = tokenizer.pad_token_id
    rng = random.Random(f"sae:{cfg.seed}")
    texts = list(texts)
    rng.shuffle(texts)
    token_batches = []
    for i in range(0, len(texts), 256):
        enc = tokenizer(texts[i : i + 256], padding=True, return_tensors="pt")
        token_batches.append(enc["input_ids"])
    hooks = [hook_name(layer) for layer in cfg.layers]
    acts = collect_activations(model, token_batches, pad, hooks)
    n_eval = max(1, len(next(iter(acts.values()))) // 10)

    saes, stats = {}, {}
    for j, hook in enumerate(hooks):
        a = acts[hook]
        train_a, eval_a = a[n_eval:], a[:n_eval]
        t0 = time.perf_counter()
        tcfg = TopKTrainingSAEConfig(
            d_in=a.shape[1], d_sae=cfg.d_sae, k=cfg.k, device="cpu",
            metadata=SAEMetadata(hook_name=hook, model_name=model_name, prepend_bos=True),
        )
        torch.manual_seed(cfg.seed * 1000 + j)
        training_sae = TopKTrainingSAE(tcfg)
        trainer = SAETrainer(
            cfg=SAETrainerConfig(
                total_training_samples=cfg.steps * cfg.batch_size,
                train_batch_size_samples=cfg.batch_size, lr=cfg.lr, lr_end=cfg.lr / 10,
                lr_scheduler_name="cosineannealing", lr_warm_up_steps=100, device="cpu",
                logger=LoggingConfig(log_to_wandb=False), n_batches_for_norm_estimate=10,
            ),
            sae=training_sae,
            data_provider=batches_forever(train_a, cfg.batch_size, cfg.seed + j),
        )
        import contextlib
        import io

        with contextlib.redirect_stderr(io.StringIO()):  # the trainer's own tqdm bar
            trainer.fit()
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            training_sae.save_inference_model(tmp)
            sae = SAE.load_from_disk(tmp)
        sae.eval()
        fvu = fraction_of_variance_unexplained(sae, eval_a)
        with torch.no_grad():
            l0 = (sae.encode(eval_a) > 0).float().sum(-1).mean().item()
            alive = (sae.encode(a) > 0).any(0).float().mean().item()
        stats[hook] = {
            "fvu": fvu, "l0": l0, "alive_fraction": alive, "train_seconds": time.perf_counter() - t0,
            "n_train_activations": len(train_a), "d_sae": cfg.d_sae, "k": cfg.k,
        }
        log.info("SAE %s: FVU %.4f L0 %.1f alive %.2f (%.0fs)", hook, fvu, l0, alive, stats[hook]["train_seconds"])
        saes[hook] = sae
    return saes, stats
