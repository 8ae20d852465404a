"""Train the embedded world's TransformerLens model on the task mixture.

A plain next-token objective over the whole text, with the answer token weighted up: the answer
is what the benchmark measures, and the rest of each prompt (random names and digits) is mostly
unpredictable noise.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass

import torch

from bench.model.world.corpus import sample_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelTrainConfig:
    """Architecture and optimisation of the embedded model (defaults = the shipped world)."""

    n_layers: int = 6
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    n_ctx: int = 48
    # 4000 since world v2 (3000 before): 99 IOI names and four SVA forms to learn instead of 28 and one
    steps: int = 4000
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.01
    answer_weight: float = 4.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be positive")

    def tl_config_kwargs(self, d_vocab: int) -> dict:
        """The ``HookedTransformerConfig`` arguments; saved as the model's ``config.json``."""
        return dict(
            n_layers=self.n_layers, d_model=self.d_model, n_heads=self.n_heads,
            d_head=self.d_model // self.n_heads, d_mlp=self.d_mlp, d_vocab=d_vocab,
            n_ctx=self.n_ctx, act_fn="gelu", normalization_type="LN",
            positional_embedding_type="rotary", seed=self.seed, model_name="embedded-tiny",
            default_prepend_bos=True,
        )

    def tl_config(self, d_vocab: int, device: str = "cpu"):
        from transformer_lens import HookedTransformerConfig

        return HookedTransformerConfig(**self.tl_config_kwargs(d_vocab), device=device)


def encode_batch(tokenizer, texts: list[tuple[str, str | None]], n_ctx: int):
    """Tokenize ``(prompt, answer)`` texts: ``tokens [b, pos]``, ``valid [b, pos]`` (target is not
    padding) and ``answer [b, pos]`` (the position whose next token is the answer)."""
    pad = tokenizer.pad_token_id
    rows, answer_at = [], []
    for prompt, answer in texts:
        ids = tokenizer(prompt)["input_ids"]
        answer_at.append(len(ids) - 1 if answer is not None else -1)
        if answer is not None:
            ids = ids + tokenizer(answer, add_special_tokens=False)["input_ids"]
        rows.append(ids[:n_ctx])
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r)
    valid = torch.zeros_like(tokens, dtype=torch.bool)
    valid[:, :-1] = tokens[:, 1:] != pad
    answer = torch.zeros_like(valid)
    for i, a in enumerate(answer_at):
        if 0 <= a < width - 1:
            answer[i, a] = True
    return tokens, valid, answer


def training_batches(cfg: ModelTrainConfig):
    """The model's training texts, batch by batch: ``steps`` lists of ``batch_size`` ``(prompt, answer)``.

    The one definition of the stream, so that ``bench.model.world.provenance`` can replay exactly what the
    shipped model was trained on.
    """
    rng = random.Random(f"model:{cfg.seed}")
    for _ in range(cfg.steps):
        yield [sample_text(rng) for _ in range(cfg.batch_size)]


class TextFingerprint:
    """SHA-256 over ``(prompt, answer)`` texts in order, fed as they stream by: proves a replayed
    stream is the trained one without holding the stream (256,000 texts for the shipped model)."""

    def __init__(self) -> None:
        import hashlib

        self._h = hashlib.sha256()
        self.n_texts = 0

    def update(self, texts) -> None:
        for prompt, answer in texts:
            self._h.update(f"{prompt}\x1f{answer}\x1e".encode())
            self.n_texts += 1

    def record(self) -> dict:
        """The form ``world.json`` stores: ``{"n_texts", "texts_sha256"}``."""
        return {"n_texts": self.n_texts, "texts_sha256": self._h.hexdigest()}


def text_fingerprint(texts) -> str:
    """SHA-256 of a whole ``(prompt, answer)`` stream (``TextFingerprint`` fed once)."""
    fp = TextFingerprint()
    fp.update(texts)
    return fp.record()["texts_sha256"]


def train_model(cfg: ModelTrainConfig, tokenizer, progress: bool = False, device: str = "cpu"):
    """Train and return a ``HookedTransformer`` (eval mode) plus a dict of training stats."""
    from transformer_lens import HookedTransformer

    torch.manual_seed(cfg.seed)
    model = HookedTransformer(cfg.tl_config(len(tokenizer), device), tokenizer=tokenizer)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    batches = training_batches(cfg)
    fingerprint = TextFingerprint()
    t0 = time.perf_counter()
    ema = None
    from bench.progress import progress_iter

    for step in progress_iter(range(cfg.steps), desc="train model", enabled=progress):
        batch = next(batches)
        fingerprint.update(batch)
        tokens, valid, answer = encode_batch(tokenizer, batch, cfg.n_ctx)
        tokens, valid, answer = tokens.to(device), valid.to(device), answer.to(device)
        logits = model(tokens)
        logp = logits[:, :-1].log_softmax(-1)
        nll = -logp.gather(-1, tokens[:, 1:, None])[..., 0]
        w = valid[:, :-1].float() + cfg.answer_weight * answer[:, :-1].float()
        loss = (nll * w).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        ans_loss = (nll * answer[:, :-1]).sum() / answer[:, :-1].sum().clamp(min=1)
        ema = ans_loss.item() if ema is None else 0.98 * ema + 0.02 * ans_loss.item()
        if step % 250 == 0 or step == cfg.steps - 1:
            log.info("model step %d: loss %.3f answer-loss(ema) %.3f", step, loss.item(), ema)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    stats = {"train_seconds": time.perf_counter() - t0, "final_answer_loss_ema": ema, **fingerprint.record()}
    return model, stats
