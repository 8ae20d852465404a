"""What an ablated latent is replaced by: one definition shared by every method and the evaluator.

* ``mean``: per-position mean of the latents over the *train* split's corrupted prompts
  (the paper's choice), ``[pos, d_sae]``;
* ``zero``: zeros;
* ``counterfactual``: each prompt's own corrupted run, ``[n, pos, d_sae]``.

The mean is always fitted on train data, so evaluation on the test split leaks nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.data import TaskData
from bench.errors import UsageError, did_you_mean

ABLATIONS: tuple[str, ...] = ("mean", "zero", "counterfactual")


@dataclass
class Replacement:
    """Replacement latents per site: ``[pos, d_sae]`` (shared) or ``[n, pos, d_sae]`` (per prompt)."""

    kind: str
    values: dict[str, torch.Tensor]

    @property
    def per_prompt(self) -> bool:
        return self.kind == "counterfactual"

    def rows(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        """The replacement for prompts ``start:stop`` of the split it was made for."""
        if not self.per_prompt:
            return self.values
        return {s: v[start:stop] for s, v in self.values.items()}

    def index(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.per_prompt:
            return self.values
        return {s: v[idx] for s, v in self.values.items()}


def make_replacement(kind: str, spliced, split: TaskData, train: TaskData) -> Replacement:
    """The replacement for prompts of ``split``; means come from ``train``'s corrupted prompts."""
    if kind not in ABLATIONS:
        raise UsageError(did_you_mean(kind, ABLATIONS, "ablation"))
    if kind == "mean":
        lat = spliced.latents(train.patch)
        return Replacement(kind, {s: v.mean(0) for s, v in lat.items()})
    if kind == "zero":
        return Replacement(kind, {s: torch.zeros(split.n_pos, spliced.d_sae(s), device=spliced.device) for s in spliced.sites})
    return Replacement(kind, spliced.latents(split.patch))


def candidates(clean_latents: dict[str, torch.Tensor], replacement: Replacement) -> dict[str, torch.Tensor]:
    """Nodes whose ablation can change anything: ``f != r`` for some prompt. ``[pos, d_sae]`` bool.

    Circuit sizes are counted among candidates, so every method is sized on the same node set.
    """
    out = {}
    for s, f in clean_latents.items():
        r = replacement.values[s]
        r = r if r.dim() == 3 else r.unsqueeze(0)
        out[s] = (f != r).any(0)
        out[s][0] = False  # BOS passes through unchanged: never a node
    return out
