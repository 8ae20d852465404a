"""Answer controls: task variants whose "faithful small circuits" would be fitted noise.

A circuit's faithfulness F = (m(C) − m(∅)) / (m(M+SAE) − m(∅)) is only defined when the model
has a behaviour to explain: m(M+SAE) − m(∅) well away from 0. Two controls break the link between
that behaviour and any mechanism the prompt supports, while keeping F defined:

* ``oriented``: each prompt's answer pair is ordered so that the preference the latents carry,
  LD(M+SAE) − LD(∅) on that prompt, is positive (:func:`orient_answers`). On a trained model and a real task this changes
  almost nothing (the model is right on ~every prompt). On the **random-weights world** (preset
  ``embedded-random``) the model has no task mechanism; its preference between the two answers is
  whatever its random weights produce, and orientation makes that preference the "behaviour".
* ``shuffled``: each prompt gets two answers borrowed from other prompts of its split: the clean
  answers of two prompts of the same ``case``, neither of them in this prompt nor one of its own
  answers (:func:`shuffle_answers`), then oriented. The real model now "explains" why it prefers
  one of two answers that no rule of the task separates: two IO names absent from the prompt, two
  digits of other dictionaries or lists (never ``Traceback``, which is always one of a code
  prompt's own answers), two verbs of the same number. The task's mechanisms (IO vs S, "does the
  key exist", subject number) decide nothing between them. (Version 1 permuted whole answer
  pairs; review showed that kept "digit vs Traceback" and verb number, i.e. the real tasks.)

Without orientation both controls would have m(M+SAE) ≈ m(∅) ≈ 0 on average, so F would be a ratio
of noise to noise. (Version 1 ordered by LD(M+SAE) alone; on the random-weights world the
preference is mostly a fixed bias between the two tokens, which the empty circuit keeps, so
m(M+SAE) − m(∅) was ~0 and F was noise again.) With it, a method's control F measures how much of an arbitrary, prompt-specific
preference a circuit of k latents reproduces on **held-out** prompts. A method that also reaches
high F on a control at the same k cannot use that F as evidence of a mechanism; a train F far above
the test F shows a circuit fitted to its train prompts.
"""

from __future__ import annotations

import dataclasses

import torch

from bench.data import TaskData
from bench.errors import UsageError, did_you_mean

ANSWERS = ("task", "oriented", "shuffled")


def check_answers(mode: str) -> None:
    if mode not in ANSWERS:
        raise UsageError(did_you_mean(mode, ANSWERS, "answers mode"))


def shuffle_answers(data: TaskData, seed: int) -> TaskData:
    """Every prompt gets two answers that belong to other prompts and carry no mechanism of its own.

    For prompt ``i``: the clean answers of two other prompts ``j``, ``k`` of the same ``case``
    (so the pair differs in nothing the task decides: two singular verbs, two digits of existing
    keys, two IO names), distinct from each other, from prompt ``i``'s own two answers, and from
    every token of its clean and patch prompts (an IOI name that is in the prompt would bring the
    real mechanism back). Drawn with a seeded generator; a prompt with no such pair keeps a pair
    drawn without the case condition, and :func:`shuffle_report` counts those.
    """
    g = torch.Generator().manual_seed(seed)
    n = len(data)
    if n < 3:
        raise UsageError(f"a shuffled control needs at least 3 prompts per split, got {n}")
    answers = data.clean_answer
    by_case: dict[str, list[int]] = {}
    for i, c in enumerate(data.cases):
        by_case.setdefault(c, []).append(i)
    clean_a, patch_a, relaxed = answers.clone(), data.patch_answer.clone(), 0
    for i in range(n):
        banned = set(data.clean[i].tolist()) | set(data.patch[i].tolist()) | {int(answers[i]), int(data.patch_answer[i])}
        pair = _draw_pair(by_case, data.cases, answers, banned, i, g, same_case=True)
        if pair is None:
            relaxed += 1
            pair = _draw_pair(by_case, data.cases, answers, banned, i, g, same_case=False)
        if pair is None:
            raise UsageError(f"{data.name}: no two other prompts' answers avoid prompt {i}'s tokens; "
                             "the shuffled control cannot be built for this task")
        clean_a[i], patch_a[i] = pair
    out = dataclasses.replace(data, clean_answer=clean_a, patch_answer=patch_a)
    SHUFFLE_STATS[(data.name, data.split, seed)] = {"prompts": n, "without_case_match": relaxed}
    return out


SHUFFLE_STATS: dict[tuple, dict] = {}  # (task, split, seed) -> counts, for the log and tests


def _draw_pair(by_case, cases, answers, banned, i, g, same_case: bool, tries: int = 200):
    pool = [j for j in (by_case[cases[i]] if same_case else range(len(cases))) if j != i and int(answers[j]) not in banned]
    if len(pool) < 2:
        return None
    for _ in range(tries):
        a, b = (pool[int(x)] for x in torch.randint(len(pool), (2,), generator=g))
        if int(answers[a]) != int(answers[b]) and (not same_case or cases[a] == cases[b]):
            return int(answers[a]), int(answers[b])
    return None


@torch.no_grad()
def orient_answers(data: TaskData, spliced, replacement, max_rows: int = 256) -> TaskData:
    """Order each prompt's answers so that the part of its preference the latents carry is positive.

    For prompt ``i`` let ``d_i = LD_i(M+SAE) − LD_i(∅)`` (every latent kept, minus every latent
    replaced by ``replacement``, the run's ablation). Where ``d_i < 0`` the two answers are swapped,
    which flips its sign. F's denominator m(M+SAE) − m(∅) is then the mean of ``|d_i|`` > 0.
    Ordering by LD(M+SAE) alone is not enough: a model whose preference is a fixed bias between the
    two tokens (as a random-weights model's mostly is) has m(M+SAE) ≈ m(∅), and F is noise.
    """
    from bench.model.masked import stacked_logit_diff

    keep = {s: torch.ones(data.n_pos, spliced.d_sae(s), dtype=torch.bool) for s in spliced.sites}
    drop = {s: torch.zeros_like(m) for s, m in keep.items()}
    ld = stacked_logit_diff(spliced, data, [keep, drop], replacement, max_rows).float().cpu()
    flip = (ld[0] - ld[1]) < 0
    clean = torch.where(flip, data.patch_answer, data.clean_answer)
    patch = torch.where(flip, data.clean_answer, data.patch_answer)
    return dataclasses.replace(data, clean_answer=clean, patch_answer=patch)


def apply_answers(mode: str, data: TaskData, spliced, seed: int, replacement, max_rows: int = 256) -> TaskData:
    """The split ``data`` under answers mode ``mode`` (``task``: unchanged); ``replacement``: the
    run's ablation for this split (orientation needs the empty circuit)."""
    check_answers(mode)
    if mode == "task":
        return data
    if mode == "shuffled":
        # one draw per split and seed; the split name keeps train and test draws apart
        data = shuffle_answers(data, seed * 1000 + (1 if data.split == "test" else 0))
    return orient_answers(data, spliced, replacement, max_rows)
