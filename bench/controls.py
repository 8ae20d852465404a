"""Answer controls: task variants whose "faithful small circuits" would be fitted noise.

A circuit's faithfulness F = (m(C) − m(∅)) / (m(M+SAE) − m(∅)) is only defined when the model
has a behaviour to explain: m(M+SAE) − m(∅) well away from 0. Two controls break the link between
that behaviour and any mechanism the prompt supports, while keeping F defined:

* ``oriented``: each prompt's answer pair is ordered so that the spliced model prefers the first
  (``logit[clean_answer] ≥ logit[patch_answer]``). On a trained model and a real task this changes
  almost nothing (the model is right on ~every prompt). On the **random-weights world** (preset
  ``embedded-random``) the model has no task mechanism; its preference between the two answers is
  whatever its random weights produce, and orientation makes that preference the "behaviour".
* ``shuffled``: the answer pairs are permuted across the prompts of each split (a derangement, so
  no prompt keeps its own pair), then oriented. The real model now "explains" why it prefers one
  of two answers that belong to another prompt. For IOI these are names absent from the prompt;
  for the code tasks a value or ``Traceback`` unrelated to this dictionary or list; for SVA a verb
  pair whose preference may still follow the subject's number (a mechanism that survives the
  shuffle, said in the report).

Without orientation both controls would have m(M+SAE) ≈ m(∅) ≈ 0 on average, so F would be a ratio
of noise to noise. With it, a method's control F measures how much of an arbitrary, prompt-specific
preference a circuit of k latents reproduces on **held-out** prompts. A method that also reaches
high F on a control at the same k cannot use that F as evidence of a mechanism; a train F far above
the test F shows a circuit fitted to its train prompts.
"""

from __future__ import annotations

import dataclasses

import torch

from bench.data import TaskData, logit_diff
from bench.errors import UsageError, did_you_mean

ANSWERS = ("task", "oriented", "shuffled")


def check_answers(mode: str) -> None:
    if mode not in ANSWERS:
        raise UsageError(did_you_mean(mode, ANSWERS, "answers mode"))


def derangement(n: int, seed: int) -> torch.Tensor:
    """A seeded permutation of range(n) with no fixed point (n ≥ 2): rejection sampling."""
    if n < 2:
        raise UsageError(f"a shuffled control needs at least 2 prompts per split, got {n}")
    g = torch.Generator().manual_seed(seed)
    while True:  # the chance that a random permutation is a derangement is ~1/e
        perm = torch.randperm(n, generator=g)
        if not (perm == torch.arange(n)).any():
            return perm


def shuffle_answers(data: TaskData, seed: int) -> TaskData:
    """Every prompt gets another prompt's (clean_answer, patch_answer) pair."""
    perm = derangement(len(data), seed)
    return dataclasses.replace(data, clean_answer=data.clean_answer[perm], patch_answer=data.patch_answer[perm])


@torch.no_grad()
def orient_answers(data: TaskData, spliced, max_rows: int = 256) -> TaskData:
    """Swap the two answers wherever the spliced model prefers the patch answer on the clean prompt."""
    lds = []
    for i in range(0, len(data), max_rows):
        part = data.subset(list(range(i, min(len(data), i + max_rows))))
        lds.append(logit_diff(spliced.run(part.clean.to(spliced.device)), part.clean_answer, part.patch_answer).float().cpu())
    flip = torch.cat(lds) < 0
    clean = torch.where(flip, data.patch_answer, data.clean_answer)
    patch = torch.where(flip, data.clean_answer, data.patch_answer)
    return dataclasses.replace(data, clean_answer=clean, patch_answer=patch)


def apply_answers(mode: str, data: TaskData, spliced, seed: int, max_rows: int = 256) -> TaskData:
    """The split ``data`` under answers mode ``mode`` (``task``: unchanged)."""
    check_answers(mode)
    if mode == "task":
        return data
    if mode == "shuffled":
        # one permutation per split and seed; the split name keeps train and test permutations apart
        data = shuffle_answers(data, seed * 1000 + (1 if data.split == "test" else 0))
    return orient_answers(data, spliced, max_rows)
