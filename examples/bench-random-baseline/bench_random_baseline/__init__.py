"""A random ranking of the candidate nodes: the floor every real method must clear.

Area scores are only meaningful against chance; run this next to the other methods and the
report's ``area`` column gives the "vs random" reference.
"""

from dataclasses import dataclass

import torch

from bench.api import Method, MethodConfig, MethodContext, Scores


@dataclass(frozen=True)
class RandomRankingConfig(MethodConfig):
    salt: int = 0


class RandomRanking(Method):
    name = "random_ranking"
    version = "1"
    kind = "scores"
    Config = RandomRankingConfig
    contract_expected_failures = {"check_planted_latent": "a random ranking is at chance by design"}

    def discover(self, ctx: MethodContext) -> Scores:
        g = torch.Generator().manual_seed(ctx.seed * 7919 + self.config.salt)
        return Scores({s: torch.rand(ctx.train.n_pos, ctx.spliced.d_sae(s), generator=g) for s in ctx.sites})
