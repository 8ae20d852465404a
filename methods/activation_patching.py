"""Exact activation patching: the true effect of ablating each candidate node on its own.

For every candidate node ``(site, pos, latent)`` (a latent whose clean value differs from its
replacement on some train prompt), the score is ``LD(clean) - LD(node replaced)``, averaged over
prompts. Many candidates share one forward: the prompts are repeated once per candidate in a chunk
and each copy ablates its own node. Each forward starts at the node's site (the residual below it
is unchanged), which saves the layers underneath.

This is the reference the gradient methods approximate; its cost grows with the number of
candidates (thousands here) times the prompts, which is what the cost metrics show. **It is
capped**: each candidate's effect is averaged over the first ``max_prompts`` train prompts (default
8 of the train split, where every other method uses all of them), because one candidate-prompt
forward costs about 1 ms on two CPU cores and there are thousands of candidates. The report
therefore names it "noising effect on n prompts" and shows its noise: ``diagnostics`` carries the
split-half reliability of the scores (Pearson r over candidate nodes between the scores from the
first and the second half of its prompts) and the number of prompts used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.api import Method, MethodConfig, MethodContext, Scores
from bench.data import logit_diff
from bench.model.masked import one_node_per_row_edit


@dataclass(frozen=True)
class ActivationPatchingConfig(MethodConfig):
    max_prompts: int = 8
    forward_batch: int = 128  # rows per forward; 128 runs fastest on CPU (1.4x over 512 on dict); raise it on a GPU

    def __post_init__(self) -> None:
        if self.max_prompts < 1 or self.forward_batch < 1:
            raise ValueError("max_prompts and forward_batch must be >= 1")


class ActivationPatching(Method):
    name = "activation_patching"
    version = "3"
    kind = "scores"
    Config = ActivationPatchingConfig
    quick_overrides = {"max_prompts": 3}

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
        halves = {"a": [], "b": []}
        per_chunk = max(1, cfg.forward_batch // n)
        prompt_of_row = torch.arange(n, device=spliced.device)
        for site in ctx.sites:
            score = torch.zeros(data.n_pos, spliced.d_sae(site), device=spliced.device)
            nodes = ctx.candidates[site].nonzero()  # [n_nodes, 2] (pos, latent)
            r = repl[site]
            # The site's clean latents are the same in every row: encode once, not per row.
            f_site = spliced.encode(site, inputs[site].to(spliced.device))
            for i in range(0, len(nodes), per_chunk):
                chunk = nodes[i : i + per_chunk]
                c = len(chunk)
                # Row j of the batch is prompt j % n with node j // n ablated.
                rows = torch.arange(c * n, device=spliced.device)
                pos = chunk[:, 0].repeat_interleave(n)
                lat = chunk[:, 1].repeat_interleave(n)
                prompt = prompt_of_row.repeat(c)
                value = r[prompt, pos, lat] if r.dim() == 3 else r[pos, lat]
                logits = spliced.run_from(site, inputs[site].repeat(c, 1, 1), {site: one_node_per_row_edit(rows, pos, lat, value)},
                                          latents=f_site.repeat(c, 1, 1))
                ld = logit_diff(logits, data.clean_answer.repeat(c), data.patch_answer.repeat(c))
                delta = (base.repeat(c) - ld).view(c, n)
                score[chunk[:, 0], chunk[:, 1]] = delta.mean(1).to(score.dtype)  # bf16 models: scores kept in fp32
                if n >= 2:
                    halves["a"].append(delta[:, : n // 2].mean(1))
                    halves["b"].append(delta[:, n // 2 :].mean(1))
            scores[site] = score
        diag = {"prompts_used": float(n)}
        if halves["a"]:
            a, b = torch.cat(halves["a"]).float(), torch.cat(halves["b"]).float()
            if len(a) > 2 and a.std() > 0 and b.std() > 0:
                diag["split_half_r"] = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
        return Scores(scores, diag)
