"""Measure a model on the four tasks: accuracy and logit difference on held-out records."""

from __future__ import annotations

import torch

from bench.data import logit_diff


@torch.no_grad()
def token_quality(run, clean: torch.Tensor, clean_answer: torch.Tensor, patch_answer: torch.Tensor,
                  batch_size: int = 256) -> dict[str, float]:
    """Mean clean logit difference, pairwise accuracy (LD > 0) and top-1 accuracy.

    Pairwise accuracy is the benchmark's notion (the clean answer beats the counterfactual
    answer); top-1 asks the answer to be the argmax over the whole vocabulary. ``run`` maps
    tokens ``[batch, pos]`` to logits (a model, or a spliced model's ``run``); ``clean`` is
    ``[n, pos]``, the answers ``[n]``.
    """
    lds, top1 = [], []
    for i in range(0, len(clean), batch_size):
        logits = run(clean[i : i + batch_size])
        a, b = clean_answer[i : i + batch_size], patch_answer[i : i + batch_size]
        lds.append(logit_diff(logits, a, b))
        top1.append(logits[:, -1].argmax(-1) == a)
    ld = torch.cat(lds)
    return {
        "logit_diff": ld.mean().item(),
        "pairwise_accuracy": (ld > 0).float().mean().item(),
        "top1_accuracy": torch.cat(top1).float().mean().item(),
    }


def task_quality(run, tokenizer, records: list[dict[str, str]], batch_size: int = 256, device="cpu") -> dict[str, float]:
    """:func:`token_quality` of generated ``records`` (all of one token length, answers one token)."""
    def first(text: str) -> int:
        return tokenizer(text, add_special_tokens=False)["input_ids"][0]

    clean = torch.tensor([tokenizer(r["clean_prefix"])["input_ids"] for r in records], device=device)
    a = torch.tensor([first(r["clean_answer"]) for r in records], device=device)
    b = torch.tensor([first(r["patch_answer"]) for r in records], device=device)
    return token_quality(run, clean, a, b, batch_size)
