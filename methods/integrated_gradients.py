"""Integrated gradients over SAE latents, through captum.

The path runs in "mask space": at ``alpha`` the edited latents are ``r + alpha (f - r)``. Captum's
``IntegratedGradients`` integrates the gradient of the per-prompt metric with respect to the mask
from 0 (replacement) to 1 (clean); the attribution of a node is then
``mean_alpha grad_f(LD) * (f - r)``, positive when the node supports the clean answer.

* ``path="per_sae"`` (the paper): one SAE at a time is interpolated while the others run
  normally, so downstream latents are recomputed from the interpolated residual.
* ``path="joint"``: every SAE is interpolated at once along one path. By the completeness of IG
  the scores then sum to ``LD(all kept) - LD(all ablated)``.

The paper used 10 steps of a Riemann sum that includes the clean end and excludes the
corrupted one; that is captum's ``riemann_right`` in this parametrisation (the default).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.api import Method, MethodConfig, MethodContext, Prefix, Scores
from bench.data import logit_diff
from bench.model.masked import run_masked

PATHS = ("per_sae", "joint")
RULES = ("riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid", "gausslegendre")


@dataclass(frozen=True)
class IntegratedGradientsConfig(MethodConfig):
    n_steps: int = 10
    path: str = "per_sae"
    rule: str = "riemann_right"
    batch_size: int = 16
    internal_batch_size: int = 160

    def __post_init__(self) -> None:
        if self.path not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {self.path!r}")
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {self.rule!r}")
        if self.n_steps < 1:
            raise ValueError("n_steps must be >= 1")


class IntegratedGradients(Method):
    name = "integrated_gradients"
    version = "1"
    kind = "scores"
    gradient_based = True
    Config = IntegratedGradientsConfig

    def discover(self, ctx: MethodContext) -> Scores:
        from captum.attr import IntegratedGradients as CaptumIG

        cfg = self.config
        groups = [[s] for s in ctx.sites] if cfg.path == "per_sae" else [list(ctx.sites)]
        totals = {s: torch.zeros(ctx.train.n_pos, ctx.spliced.d_sae(s), device=ctx.spliced.device) for s in ctx.sites}
        n = len(ctx.train)
        for group in groups:
            for start, batch in ctx.train.batches(cfg.batch_size):
                repl = ctx.replacement.rows(start, start + len(batch))
                b = len(batch)
                # Per-prompt replacements ride along as additional args so captum expands them
                # with the interpolation steps.
                shared = {s: r for s, r in repl.items() if r.dim() == 2}
                per_prompt = [repl[s] if repl[s].dim() == 3 else torch.zeros(b, 0) for s in group]

                # The layers below the first site are the same at every interpolation step: they
                # run once (ctx.train_prefix) and captum tiles their output like any other arg.
                prefix = ctx.train_prefix()
                inputs0 = prefix.resid[start : start + b] if prefix is not None else batch.clean

                def forward(*args: torch.Tensor, group=group, shared=shared) -> torch.Tensor:
                    k = len(group)
                    masks, x, ca, pa, reps = args[:k], args[k], args[k + 1], args[k + 2], args[k + 3 :]
                    repl_rows = {s: shared[s] if s in shared else r for s, r in zip(group, reps)}
                    x = Prefix(x) if x.is_floating_point() else x
                    return logit_diff(run_masked(ctx.spliced, x, dict(zip(group, masks)), repl_rows), ca, pa)

                inputs = tuple(
                    torch.ones(b, ctx.train.n_pos, ctx.spliced.d_sae(s), device=ctx.spliced.device) for s in group
                )
                baselines = tuple(torch.zeros_like(x) for x in inputs)
                attr = CaptumIG(forward).attribute(
                    inputs, baselines=baselines, n_steps=cfg.n_steps, method=cfg.rule,
                    additional_forward_args=(inputs0, batch.clean_answer, batch.patch_answer, *per_prompt),
                    internal_batch_size=max(b, cfg.internal_batch_size),
                )
                for s, a in zip(group, attr):
                    totals[s] += a.sum(0) / n
        return Scores(totals)
