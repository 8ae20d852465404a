"""Measure a model on the four tasks: accuracy and logit difference on held-out records."""

from __future__ import annotations

import torch

from bench.data import logit_diff


@torch.no_grad()
def task_quality(run, tokenizer, records: list[dict[str, str]], batch_size: int = 256, device="cpu") -> dict[str, float]:
    """Mean clean logit difference, pairwise accuracy (LD > 0) and top-1 accuracy over ``records``.

    Pairwise accuracy is the benchmark's notion (the clean answer beats the counterfactual
    answer); top-1 asks the answer to be the argmax over the whole vocabulary. ``run`` maps
    tokens ``[batch, pos]`` to logits (a model, or a spliced model's ``run``).
    """
    lds, top1 = [], []
    for i in range(0, len(records), batch_size):
        chunk = records[i : i + batch_size]
        tokens = torch.tensor([tokenizer(r["clean_prefix"])["input_ids"] for r in chunk], device=device)
        a = torch.tensor([tokenizer(r["clean_answer"], add_special_tokens=False)["input_ids"][0] for r in chunk], device=device)
        b = torch.tensor([tokenizer(r["patch_answer"], add_special_tokens=False)["input_ids"][0] for r in chunk], device=device)
        logits = run(tokens)
        lds.append(logit_diff(logits, a, b))
        top1.append(logits[:, -1].argmax(-1) == a)
    ld = torch.cat(lds)
    return {
        "logit_diff": ld.mean().item(),
        "pairwise_accuracy": (ld > 0).float().mean().item(),
        "top1_accuracy": torch.cat(top1).float().mean().item(),
    }
