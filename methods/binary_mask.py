"""Learned binary masks over SAE latents (Caples, Nainani, McDougall, Neuhaus 2025).

Continuous sparsification, deterministic: each node has a logit ``m`` (initialised to 1, every
node on) and a soft mask ``s = sigmoid(T m)`` whose temperature rises as
``T_i = 200 ** (1.1 i / S)`` over ``round(1.1 S)`` steps (1 -> about 600). Ablated latents are
replaced as the benchmark's ablation says (default: the per-position mean over corrupted train
prompts), ``f' = r + s (f - r)``. The loss is

    | LD_ref - LD_masked | + lambda * mean over SAEs ( sum over nodes of s )

with ``LD_ref`` the unmasked model+SAEs on the same prompts, computed once (it is constant).
Adam, lr 1, batches of 16 train prompts. After training the mask is binarised (``m > 0``). One
fresh mask per lambda on a quadratic grid gives circuits of different sizes.

Options beyond the paper: ``granularity="latent"`` (one entry per latent, shared by positions)
and ``loss="per_prompt"`` (mean of per-prompt absolute errors, so errors cannot cancel).

The seed notebook's running mean of corrupted latents divided by the batch index instead of the
prompt count; here the replacement is the true mean (computed by the harness).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.base import Circuit, CircuitSet, Method, MethodConfig, MethodContext


@dataclass(frozen=True)
class BinaryMaskConfig(MethodConfig):
    lambdas: tuple[float, ...] = ()  # empty: quadratic grid lambda_max * (i / n_lambdas)**2
    lambda_max: float = 0.05
    n_lambdas: int = 8
    steps: int = 60
    lr: float = 1.0
    batch_size: int = 16
    granularity: str = "position"
    loss: str = "batch_mean"

    def __post_init__(self) -> None:
        if self.granularity not in ("position", "latent"):
            raise ValueError(f"granularity must be 'position' or 'latent', got {self.granularity!r}")
        if self.loss not in ("batch_mean", "per_prompt"):
            raise ValueError(f"loss must be 'batch_mean' or 'per_prompt', got {self.loss!r}")
        if self.steps < 1 or self.n_lambdas < 1 or self.lambda_max <= 0:
            raise ValueError("steps, n_lambdas and lambda_max must be positive")
        if any(lam < 0 for lam in self.lambdas):
            raise ValueError("lambdas must be >= 0")

    def grid(self) -> list[float]:
        if self.lambdas:
            return list(self.lambdas)
        return [self.lambda_max * (i / self.n_lambdas) ** 2 for i in range(1, self.n_lambdas + 1)]


class BinaryMask(Method):
    name = "binary_mask"
    version = "1"
    kind = "circuits"
    Config = BinaryMaskConfig
    quick_overrides = {"n_lambdas": 5, "steps": 40}

    def discover(self, ctx: MethodContext) -> CircuitSet:
        with torch.no_grad():
            ld_ref = torch.cat([ctx.metric(ctx.spliced.run(b.clean), b) for _, b in ctx.train.batches(64)])
        circuits = []
        for j, lam in enumerate(self.config.grid()):
            masks = self.train_mask(ctx, lam, ld_ref, seed=ctx.seed * 1000 + j)
            circuits.append(Circuit(masks, {"lambda": lam}))
        return CircuitSet(circuits)

    def train_mask(self, ctx: MethodContext, lam: float, ld_ref: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
        cfg = self.config
        dev = ctx.spliced.device
        shape = {s: (ctx.train.n_pos, ctx.spliced.d_sae(s)) if cfg.granularity == "position" else (ctx.spliced.d_sae(s),)
                 for s in ctx.sites}
        logits_m = {s: torch.ones(shp, device=dev, requires_grad=True) for s, shp in shape.items()}
        opt = torch.optim.Adam(logits_m.values(), lr=cfg.lr)
        g = torch.Generator().manual_seed(seed)
        n = len(ctx.train)
        total = round(1.1 * cfg.steps)
        order = torch.randperm(n, generator=g)
        cursor = 0
        for i in range(total):
            if cursor + cfg.batch_size > n:
                order, cursor = torch.randperm(n, generator=g), 0
            idx = order[cursor : cursor + cfg.batch_size]
            cursor += cfg.batch_size
            batch = ctx.train.subset(idx)
            temp = 200 ** (1.1 * i / cfg.steps)
            soft = {s: torch.sigmoid(temp * m) for s, m in logits_m.items()}
            repl = ctx.replacement.index(idx)
            from bench.spliced import mask_edit

            edits = {s: mask_edit(soft[s], repl[s]) for s in ctx.sites}
            ld = ctx.metric(ctx.spliced.run(batch.clean, edits), batch)
            ref = ld_ref[idx.to(ld_ref.device)]
            faith = (ref - ld).abs().mean() if cfg.loss == "per_prompt" else (ref.mean() - ld.mean()).abs()
            sparsity = torch.stack([sv.sum() for sv in soft.values()]).mean()
            loss = faith + lam * sparsity
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        out = {}
        for s, m in logits_m.items():
            keep = (m.detach() > 0)
            out[s] = keep if cfg.granularity == "position" else keep.unsqueeze(0).expand(ctx.train.n_pos, -1).clone()
        return out
