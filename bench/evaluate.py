"""One evaluator for every method: same ablation, same error policy, same held-out test split.

A circuit ``C`` is evaluated by keeping its nodes and replacing every other latent at every site
(``f' = r + 1[C] (f - r)``). With ``m`` the mean logit difference on the test split:

* ``faithfulness_norm``  = (m(C) - m(empty)) / (m(M+SAE) - m(empty))  (Marks et al.; M+SAE is the
  model with every latent kept, which is the "model" whose nodes the circuit is made of);
* ``faithfulness_sae``   = m(C) / m(M+SAE)   (what the seed stores);
* ``faithfulness_model`` = m(C) / m(M)       (what the seed plots; M is the model without SAEs).

Completeness (complement): the circuit's latents are ablated at every position and everything
else kept, ``F(M \\ C)`` in the normalised form; near 0 means the circuit holds all that matters.
Knockout (Wang et al.): for random subsets K of C, ``F(M \\ K)`` against ``F(C \\ K)``.

A denominator that is 0 or not finite makes faithfulness undefined: that raises
:class:`FaithfulnessUndefined`, which the harness records as an error row (never an inf).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from bench.ablation import Replacement
from bench.data import TaskData, logit_diff
from bench.spliced import SplicedModel, mask_edit
from bench.api import Circuit


class FaithfulnessUndefined(ValueError):
    """m(M+SAE) - m(empty), m(M+SAE) or m(M) is 0 or not finite on the test split."""


def size_grid(n_candidates: int, n_points: int = 16) -> list[int]:
    """Log-spaced circuit sizes (in nodes) from 1 to every candidate."""
    if n_candidates <= 0:
        return []
    return sorted({int(round(k)) for k in np.geomspace(1, n_candidates, n_points)})


def top_k_circuit(scores: dict[str, torch.Tensor], candidates: dict[str, torch.Tensor], k: int) -> Circuit:
    """The ``k`` candidate nodes with the largest |score| (ties broken by site, then index)."""
    sites = list(scores)
    vals = torch.cat([scores[s].abs().flatten().masked_fill(~candidates[s].flatten(), -1.0) for s in sites])
    keep = torch.zeros(len(vals), dtype=torch.bool, device=vals.device)
    keep[torch.sort(vals, descending=True, stable=True).indices[:k]] = True  # stable: a deterministic cut
    parts = keep.split([scores[s].numel() for s in sites])
    return Circuit({s: part.view(candidates[s].shape) & candidates[s] for s, part in zip(sites, parts)}, {"k": k})


@dataclass
class Evaluator:
    """Scores circuits on the test split. ``replacement`` is aligned with ``test``."""

    spliced: SplicedModel
    test: TaskData
    replacement: Replacement
    batch_size: int = 128
    baselines: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        with torch.no_grad():
            self.baselines = {
                "m_model": self._mean(lambda b, s: self.spliced.run_plain(b.clean)),
                "m_sae": self.metric(None),
                "m_empty": self.metric({s: torch.zeros(self.test.n_pos, self.spliced.d_sae(s), dtype=torch.bool) for s in self.spliced.sites}),
            }

    def _mean(self, fn) -> float:
        total, n = 0.0, len(self.test)
        for start, batch in self.test.batches(self.batch_size):
            logits = fn(batch, start)
            total += logit_diff(logits, batch.clean_answer, batch.patch_answer).sum().item()
        return total / n

    @torch.no_grad()
    def metric(self, masks: dict[str, torch.Tensor] | None) -> float:
        """Mean logit difference with only ``masks`` kept (``None``: nothing ablated)."""
        if masks is None:
            return self._mean(lambda b, s: self.spliced.run(b.clean))

        def run(batch: TaskData, start: int) -> torch.Tensor:
            repl = self.replacement.rows(start, start + len(batch))
            edits = {s: mask_edit(m.to(torch.bool), repl[s]) for s, m in masks.items()}
            return self.spliced.run(batch.clean, edits)

        return self._mean(run)

    def faithfulness(self, m_c: float) -> dict[str, float]:
        b = self.baselines
        denoms = {"norm": b["m_sae"] - b["m_empty"], "sae": b["m_sae"], "model": b["m_model"]}
        for name, d in denoms.items():
            if d == 0 or not math.isfinite(d):
                raise FaithfulnessUndefined(
                    f"faithfulness ({name}) undefined on {self.test.name}/test: denominator is {d}"
                )
        return {
            "faithfulness_norm": (m_c - b["m_empty"]) / denoms["norm"],
            "faithfulness_sae": m_c / denoms["sae"],
            "faithfulness_model": m_c / denoms["model"],
        }

    def full_masks(self) -> dict[str, torch.Tensor]:
        return {s: torch.ones(self.test.n_pos, self.spliced.d_sae(s), dtype=torch.bool) for s in self.spliced.sites}

    def complement(self, circuit: Circuit) -> dict[str, torch.Tensor]:
        """Every latent kept except the circuit's latents, which are ablated at every position."""
        out = self.full_masks()
        for s, m in circuit.masks.items():
            out[s][:, m.any(0)] = False
        return out

    def evaluate(self, circuit: Circuit, candidates: dict[str, torch.Tensor]) -> dict[str, float]:
        """All circuit metrics: sizes, raw metric, three faithfulness forms, completeness."""
        m_c = self.metric(circuit.masks)
        out = {"size_nodes": float(circuit.n_nodes(candidates)), "size_latents": float(len(circuit.latent_sets(candidates))),
               "logit_diff": m_c, **self.faithfulness(m_c)}
        m_comp = self.metric(self.complement(circuit))
        out["completeness_norm"] = self.faithfulness(m_comp)["faithfulness_norm"]
        return out

    def knockout(self, circuit: Circuit, n_samples: int, seed: int, p: float = 0.5) -> list[tuple[float, float]]:
        """``(F(M \\ K), F(C \\ K))`` for random subsets K of the circuit (each node in K w.p. p)."""
        g = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(n_samples):
            in_k = {s: m & (torch.rand(m.shape, generator=g) < p) for s, m in circuit.masks.items()}
            c_minus_k = {s: circuit.masks[s] & ~in_k[s] for s in circuit.masks}
            m_minus_k = self.full_masks()
            for s in in_k:
                m_minus_k[s] &= ~in_k[s]
            out.append((self.faithfulness(self.metric(m_minus_k))["faithfulness_norm"],
                        self.faithfulness(self.metric(c_minus_k))["faithfulness_norm"]))
        return out
