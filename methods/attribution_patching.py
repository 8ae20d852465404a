"""Attribution patching: a first-order estimate of every node's effect from one backward pass.

With the edit ``f' = r + m (f - r)`` at every site and all masks ``m = 1``, the gradient of the
mean metric with respect to ``m`` is ``grad_f(LD) * (f - r)`` averaged over prompts: the linear
estimate of ``LD(clean) - LD(node ablated)``. This is the standard attribution patching score
``grad(LD at clean) * (f_corrupt - f_clean)`` with the sign flipped so that positive means the node
supports the clean answer. All SAEs are scored in one forward and one backward pass per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.api import Method, MethodConfig, MethodContext, Scores


@dataclass(frozen=True)
class AttributionPatchingConfig(MethodConfig):
    batch_size: int = 32


class AttributionPatching(Method):
    name = "attribution_patching"
    version = "1"
    kind = "scores"
    gradient_based = True
    Config = AttributionPatchingConfig

    def discover(self, ctx: MethodContext) -> Scores:
        n_pos = ctx.train.n_pos
        masks = {
            s: torch.ones(n_pos, ctx.spliced.d_sae(s), device=ctx.spliced.device, requires_grad=True)
            for s in ctx.sites
        }
        n = len(ctx.train)
        for start, batch in ctx.train.batches(self.config.batch_size):
            ld = ctx.masked_metric(masks, batch, start)
            (ld.sum() / n).backward()
        return Scores({s: m.grad.detach().clone() for s, m in masks.items()})
