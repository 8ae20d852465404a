"""Activation-magnitude ranking: a node's score is how far its clean value sits from its replacement.

``score = mean over train prompts of |f - r|``, no gradient and no effect on the metric: the
baseline that any causal method should beat. One unedited forward per train batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.api import Method, MethodConfig, MethodContext, Scores


@dataclass(frozen=True)
class ActivationMagnitudeConfig(MethodConfig):
    batch_size: int = 64


class ActivationMagnitude(Method):
    name = "activation_magnitude"
    version = "1"
    kind = "scores"
    Config = ActivationMagnitudeConfig
    contract_expected_failures = {
        "check_planted_latent": "ranks by how far a latent moves from its replacement, not by its effect on the metric",
    }

    @torch.no_grad()
    def discover(self, ctx: MethodContext) -> Scores:
        totals = {s: torch.zeros(ctx.train.n_pos, ctx.spliced.d_sae(s), device=ctx.spliced.device) for s in ctx.sites}
        for start, batch in ctx.train.batches(self.config.batch_size):
            cap: dict[str, torch.Tensor] = {}
            ctx.spliced.run(batch.clean, capture=cap)
            repl = ctx.replacement.rows(start, start + len(batch))
            for s in ctx.sites:
                totals[s] += (cap[s] - repl[s].to(cap[s].dtype)).abs().sum(0)
        return Scores({s: t / len(ctx.train) for s, t in totals.items()})
