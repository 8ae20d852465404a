"""Random ranking: the floor every real method must clear (a control, not a discovery method).

Each node gets an independent uniform score; the harness cuts circuits from it like any ranking,
so a random circuit of size k is k nodes drawn uniformly from the universe. Area scores are
reported relative to this method (0 = random, 1 = ideal).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.api import Method, MethodConfig, MethodContext, Scores


@dataclass(frozen=True)
class RandomConfig(MethodConfig):
    salt: int = 0


class Random(Method):
    name = "random"
    version = "1"
    kind = "scores"
    Config = RandomConfig
    contract_expected_failures = {"check_planted_latent": "a random ranking is at chance by design"}

    def discover(self, ctx: MethodContext) -> Scores:
        g = torch.Generator().manual_seed(ctx.seed * 7919 + self.config.salt)
        return Scores({s: torch.rand(ctx.train.n_pos, ctx.spliced.d_sae(s), generator=g) for s in ctx.sites})
