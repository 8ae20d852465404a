"""Exact activation patching: the true effect of ablating each candidate node on its own.

For every candidate node ``(site, pos, latent)`` (a latent whose clean value differs from its
replacement on some train prompt), the score is ``LD(clean) - LD(node replaced)``, averaged over
prompts. Many candidates share one forward: the prompts are repeated once per candidate in a chunk
and each copy ablates its own node. Each forward starts at the node's site (the residual below it
is unchanged), which saves the layers underneath.

This is the reference the gradient methods approximate; its cost grows with the number of
candidates, which is what the cost metrics show.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.spliced import mask_edit
from methods.base import Method, MethodConfig, MethodContext, Scores


@dataclass(frozen=True)
class ActivationPatchingConfig(MethodConfig):
    max_prompts: int = 32
    forward_batch: int = 2048

    def __post_init__(self) -> None:
        if self.max_prompts < 1 or self.forward_batch < 1:
            raise ValueError("max_prompts and forward_batch must be >= 1")


class ActivationPatching(Method):
    name = "activation_patching"
    version = "1"
    kind = "scores"
    Config = ActivationPatchingConfig

    @torch.no_grad()
    def discover(self, ctx: MethodContext) -> Scores:
        cfg = self.config
        data = ctx.train.subset(list(range(min(cfg.max_prompts, len(ctx.train)))))
        n = len(data)
        spliced = ctx.spliced
        repl = ctx.replacement.rows(0, n)
        base = ctx.metric(spliced.run(data.clean), data)  # [n]
        inputs = spliced.site_inputs(data.clean)
        scores = {}
        per_chunk = max(1, cfg.forward_batch // n)
        for site in ctx.sites:
            d_sae = spliced.d_sae(site)
            score = torch.zeros(data.n_pos, d_sae, device=spliced.device)
            nodes = ctx.candidates[site].nonzero()  # [n_nodes, 2] (pos, latent)
            r = repl[site]
            for i in range(0, len(nodes), per_chunk):
                chunk = nodes[i : i + per_chunk]
                c = len(chunk)
                mask = torch.ones(c, data.n_pos, d_sae, device=spliced.device)
                mask[torch.arange(c), chunk[:, 0], chunk[:, 1]] = 0.0
                mask = mask.repeat_interleave(n, dim=0)  # [c*n, pos, d_sae]
                rr = r.repeat(c, 1, 1) if r.dim() == 3 else r
                x = inputs[site].repeat(c, 1, 1)
                logits = spliced.run_from(site, x, {site: mask_edit(mask, rr)})
                ld = logits[:, -1].gather(1, data.clean_answer.repeat(c)[:, None])[:, 0] - logits[:, -1].gather(
                    1, data.patch_answer.repeat(c)[:, None])[:, 0]
                effect = (base.repeat(c) - ld).view(c, n).mean(1)
                score[chunk[:, 0], chunk[:, 1]] = effect
            scores[site] = score
        return Scores(scores)
