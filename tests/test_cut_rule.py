"""The cut rule of a ranking is chosen on the train split (bench.run.cell.choose_cut_rule).

A fake evaluator whose logit difference is the sum of the kept nodes' true effects makes every
train F hand-computable: F(C) = LD(C) / LD(all), so the rule with the larger mean F over the grid
is known in advance.
"""

from __future__ import annotations

import pytest
import torch

from bench.api import Scores
from bench.eval.sizes import top_k_circuit
from bench.run.cell import choose_cut_rule

SITE = "s"


class AdditiveEvaluator:
    def __init__(self, effects):
        self.effects = torch.tensor(effects, dtype=torch.float).view(1, -1)
        self.splits_seen = []

    def lds(self, masks, split):
        self.splits_seen.append(split)
        return torch.stack([(m[SITE].float() * self.effects).sum().repeat(4) for m in masks])

    def faithfulness(self, m_c, split):
        return {"faithfulness_sae_norm": m_c / float(self.effects.sum())}


def _universe(n):
    return {SITE: torch.ones(1, n, dtype=torch.bool)}


def test_positive_first_wins_when_negative_nodes_hurt():
    effects = [3.0, -5.0, 2.0, 1.0, 4.0]  # scores equal the true effects
    ev = AdditiveEvaluator(effects)
    rule, area = choose_cut_rule(ev, Scores({SITE: torch.tensor([effects])}), _universe(5), [1, 2, 3])
    # abs:      k=1 {-5} -> -5, k=2 {-5, 4} -> -1, k=3 {-5, 4, 3} -> 2   (total effect 5)
    # positive: k=1 {4} -> 4,   k=2 {4, 3} -> 7,   k=3 {4, 3, 2} -> 9
    assert area == pytest.approx({"abs": (-5 - 1 + 2) / 3 / 5, "positive": (4 + 7 + 9) / 3 / 5})
    assert rule == "positive" and set(ev.splits_seen) == {"train"}  # never the test split


def test_abs_wins_when_the_score_sign_is_wrong():
    effects = [3.0, 1.0, 0.5]
    ev = AdditiveEvaluator(effects)
    scores = torch.tensor([[-3.0, 1.0, 0.5]])  # the strongest node has the wrong sign
    rule, area = choose_cut_rule(ev, Scores({SITE: scores}), _universe(3), [1, 2])
    assert rule == "abs" and area["abs"] > area["positive"]


def test_no_negative_score_means_one_rule_and_no_evaluation():
    ev = AdditiveEvaluator([1.0, 2.0])
    rule, area = choose_cut_rule(ev, Scores({SITE: torch.tensor([[1.0, 2.0]])}), _universe(2), [1])
    assert (rule, area, ev.splits_seen) == ("abs", {}, [])


def test_the_cut_keeps_its_rule_and_positive_puts_negatives_last():
    scores = {SITE: torch.tensor([[0.5, -3.0, 2.0, 0.0]])}
    c = top_k_circuit(scores, _universe(4), 3, "positive")
    assert c.masks[SITE].tolist() == [[True, False, True, True]] and c.params["cut_rule"] == "positive"
    assert top_k_circuit(scores, _universe(4), 1, "abs").masks[SITE].tolist() == [[False, True, False, False]]
    with pytest.raises(ValueError, match="cut rule"):
        top_k_circuit(scores, _universe(4), 1, "largest")
