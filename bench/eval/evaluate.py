"""One evaluator for every method: same ablation, same error policy, train and held-out test splits.

A circuit ``C`` is evaluated by keeping its nodes and replacing every other latent at every site
(``f' = r + 1[C] (f - r)``). With ``m`` the mean logit difference over a split's prompts, the
faithfulness forms are (docs/method.md; each figure and table says which it shows):

* ``faithfulness_sae_norm`` = (m(C) − m(∅)) / (m(M+SAE) − m(∅)): normalised against the spliced
  model with every latent kept, whose nodes the circuit is made of; F(full) = 1 and F(∅) = 0
  exactly. This is the headline form.
* ``faithfulness_marks``    = (m(C) − m(∅)) / (m(M) − m(∅)): Marks et al.'s form, normalised by
  the model without SAEs, so it also charges the SAEs' reconstruction error.
* ``faithfulness_ratio_sae``   = m(C) / m(M+SAE): what the seed code stores.
* ``faithfulness_ratio_model`` = m(C) / m(M): what the seed plots.

``complement_faithfulness`` is F(M \\ C) in the headline form: the circuit's latents ablated at
every position, everything else kept; near 0 means the circuit holds all that matters (lower is
more complete). Knockout (Wang et al.; the paper removes latents at all positions, and so do we):
for random subsets K of the circuit's *latents*, F(M \\ K) against F(C \\ K).

Per-prompt logit differences are kept (not just means) so the report can bootstrap intervals over
prompts and seeds. A denominator that is 0 or not finite makes faithfulness undefined: that raises
:class:`FaithfulnessUndefined`, which the harness records as an error row (never an inf).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from bench.api import Circuit
from bench.data import TaskData, logit_diff
from bench.model.ablation import Replacement
from bench.model.masked import stacked_logit_diff
from bench.model.spliced import SplicedModel

F_FORMS = ("faithfulness_sae_norm", "faithfulness_marks", "faithfulness_ratio_sae", "faithfulness_ratio_model")
HEADLINE = "faithfulness_sae_norm"


class FaithfulnessUndefined(ValueError):
    """m(M+SAE) − m(∅), m(M) − m(∅), m(M+SAE) or m(M) is 0 or not finite on a split."""


def faithfulness_forms(m_c: float, m_sae: float, m_empty: float, m_model: float) -> dict[str, float]:
    """The four forms from mean logit differences (see the module docstring)."""
    return {
        "faithfulness_sae_norm": (m_c - m_empty) / (m_sae - m_empty),
        "faithfulness_marks": (m_c - m_empty) / (m_model - m_empty),
        "faithfulness_ratio_sae": m_c / m_sae,
        "faithfulness_ratio_model": m_c / m_model,
    }


@dataclass
class SplitData:
    """One split's prompts and its replacement latents (aligned with the prompts when per prompt)."""

    data: TaskData
    replacement: Replacement


@dataclass
class Evaluator:
    """Scores circuits on the ``train`` and ``test`` splits of one task.

    ``universe`` holds every node (see :mod:`bench.eval.sizes`); the full circuit is the universe and
    the empty circuit keeps nothing. ``max_rows`` bounds the rows of one forward (circuits are
    stacked along the batch).
    """

    spliced: SplicedModel
    splits: dict[str, SplitData]
    universe: dict[str, torch.Tensor]
    max_rows: int = 1024
    per_prompt: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        full = self.universe
        empty = {s: torch.zeros_like(m) for s, m in full.items()}
        for split, sd in self.splits.items():
            with torch.no_grad():
                plain = torch.cat([logit_diff(self.spliced.run_plain(b.clean), b.clean_answer, b.patch_answer).float().cpu()
                                   for _, b in sd.data.batches(self.max_rows)])
            lds = self.lds([full, empty], split)
            self.per_prompt[split] = {"m_model": plain, "m_sae": lds[0], "m_empty": lds[1]}

    def baselines(self, split: str, n: int | None = None) -> dict[str, float]:
        """Mean logit differences of the model, the model+SAEs and the empty circuit on ``split``
        (on its first ``n`` prompts if given)."""
        return {k: float(v[:n].mean()) for k, v in self.per_prompt[split].items()}

    def check_defined(self, split: str = "test", n: int | None = None) -> None:
        b = self.baselines(split, n)
        denoms = {"m(M+SAE) - m(empty)": b["m_sae"] - b["m_empty"], "m(M) - m(empty)": b["m_model"] - b["m_empty"],
                  "m(M+SAE)": b["m_sae"], "m(M)": b["m_model"]}
        for name, d in denoms.items():
            if d == 0 or not math.isfinite(d):
                raise FaithfulnessUndefined(f"faithfulness undefined on {self.splits[split].data.name}/{split}: {name} is {d}")

    def faithfulness(self, m_c: float, split: str, n: int | None = None) -> dict[str, float]:
        """The four forms for mean logit difference ``m_c`` measured on ``split`` (on its first
        ``n`` prompts: the baselines are then taken on the same prompts)."""
        self.check_defined(split, n)
        b = self.baselines(split, n)
        return faithfulness_forms(m_c, b["m_sae"], b["m_empty"], b["m_model"])

    def lds(self, masks: Sequence[Mapping[str, torch.Tensor]], split: str, n: int | None = None) -> torch.Tensor:
        """Per-prompt logit differences ``[len(masks), n_prompts]`` on ``split`` (its first ``n`` prompts)."""
        sd = self.splits[split]
        data = sd.data if n is None or n >= len(sd.data) else sd.data.subset(list(range(n)))
        return stacked_logit_diff(self.spliced, data, list(masks), sd.replacement, self.max_rows)

    def complement(self, circuit: Circuit) -> dict[str, torch.Tensor]:
        """Every node kept except the circuit's latents, which are ablated at every position."""
        out = {s: m.clone() for s, m in self.universe.items()}
        for s, m in circuit.masks.items():
            out[s][:, m.any(0)] = False
        return out

    def knockout(self, circuit: Circuit, n_samples: int, seed: int, p: float = 0.5,
                 n_prompts: int | None = None) -> list[tuple[float, float]]:
        """``(F(M \\ K), F(C \\ K))`` on test for random latent subsets K (each latent in K w.p. p).

        ``n_prompts``: use the first ``n_prompts`` test prompts only (in record order: a random draw
        for generated tasks, the file's order for a task file), with baselines on the same prompts. Knockout is a secondary view
        and costs ``2 n_samples`` circuit evaluations per circuit, so the run bounds it.
        """
        g = torch.Generator().manual_seed(seed)
        with_k, without_k = [], []
        for _ in range(n_samples):
            model_minus, circ_minus = {}, {}
            for s, m in circuit.masks.items():
                in_k = m.any(0) & (torch.rand(m.shape[1], generator=g) < p)  # [d_sae] latents of C in K
                model_minus[s] = self.universe[s] & ~in_k
                circ_minus[s] = m & ~in_k
            with_k.append(model_minus)
            without_k.append(circ_minus)
        lds = self.lds(with_k + without_k, "test", n_prompts).mean(1).tolist()
        fm = [self.faithfulness(v, "test", n_prompts)[HEADLINE] for v in lds[:n_samples]]
        fc = [self.faithfulness(v, "test", n_prompts)[HEADLINE] for v in lds[n_samples:]]
        return list(zip(fm, fc))
