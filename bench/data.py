"""Tokenized task data and the one task metric.

``TaskData`` holds a task's prompts as token tensors for one model. Building it validates what
needs a tokenizer: each answer must be one token, clean and patch prompts must have the same
length, and every prompt of a task must share one length (so position-wise masks apply to all).
Splitting is by prompt pair, so a pair stored in both directions never straddles train and test.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass

import torch

from bench.errors import TaskFileError

log = logging.getLogger(__name__)


@dataclass
class TaskData:
    """Token tensors of one task (or one split of it).

    ``clean``/``patch``: ``[n, pos]`` token ids; ``clean_answer``/``patch_answer``: ``[n]`` ids.
    """

    name: str
    version: str
    clean: torch.Tensor
    patch: torch.Tensor
    clean_answer: torch.Tensor
    patch_answer: torch.Tensor
    cases: list[str]
    split: str = "all"

    def __len__(self) -> int:
        return len(self.clean)

    @property
    def n_pos(self) -> int:
        return self.clean.shape[1]

    def subset(self, idx: list[int] | torch.Tensor, split: str | None = None) -> TaskData:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return TaskData(
            self.name, self.version, self.clean[idx], self.patch[idx], self.clean_answer[idx],
            self.patch_answer[idx], [self.cases[i] for i in idx.tolist()], split or self.split,
        )

    def batches(self, size: int):
        for i in range(0, len(self), size):
            yield i, self.subset(list(range(i, min(len(self), i + size))))


def logit_diff(logits: torch.Tensor, clean_answer: torch.Tensor, patch_answer: torch.Tensor) -> torch.Tensor:
    """Per-prompt ``logit[clean_answer] - logit[patch_answer]`` at the last position: ``[n]``."""
    last = logits[:, -1]
    idx = torch.arange(len(last), device=last.device)
    return last[idx, clean_answer.to(last.device)] - last[idx, patch_answer.to(last.device)]


def _single_token(tokenizer, text: str, where: str, field: str) -> int:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        raise TaskFileError(
            f"{where}: {field} {text!r} is {len(ids)} tokens {pieces}; answers must be exactly one token"
        )
    if tokenizer.unk_token_id is not None and ids[0] == tokenizer.unk_token_id:
        raise TaskFileError(f"{where}: {field} {text!r} is not in the model's vocabulary (tokenizes to {tokenizer.unk_token!r})")
    return ids[0]


def tokenize_records(records: list[dict[str, str]], tokenizer, name: str, version: str, source: str) -> TaskData:
    """Validate and tokenize records; ``source`` names the file or task in error messages.

    Records whose (equal) clean/patch length differs from the task's most common length are
    dropped with a warning, as the seed does; an answer that is not one token or a record whose
    clean and patch lengths differ is an error.
    """
    if not records:
        raise TaskFileError(f"{source}: no records")
    rows = []
    for i, r in enumerate(records):
        where = f"{source}: record {i}"
        c = tokenizer(r["clean_prefix"])["input_ids"]
        p = tokenizer(r["patch_prefix"])["input_ids"]
        if len(c) != len(p):
            raise TaskFileError(
                f"{where}: clean_prefix is {len(c)} tokens but patch_prefix is {len(p)}; they must be equal"
            )
        a = _single_token(tokenizer, r["clean_answer"], where, "clean_answer")
        b = _single_token(tokenizer, r["patch_answer"], where, "patch_answer")
        if a == b:
            raise TaskFileError(f"{where}: clean_answer and patch_answer are the same token {r['clean_answer']!r}")
        rows.append((c, p, a, b, r["case"]))
    length, _ = Counter(len(c) for c, *_ in rows).most_common(1)[0]
    kept = [row for row in rows if len(row[0]) == length]
    if len(kept) < len(rows):
        log.warning("%s: dropped %d of %d records whose length is not the task's %d tokens",
                    source, len(rows) - len(kept), len(rows), length)
    return TaskData(
        name, version,
        torch.tensor([k[0] for k in kept]), torch.tensor([k[1] for k in kept]),
        torch.tensor([k[2] for k in kept]), torch.tensor([k[3] for k in kept]),
        [k[4] for k in kept],
    )


def split_train_test(data: TaskData, n_train: int, n_test: int, seed: int) -> tuple[TaskData, TaskData]:
    """A fixed train/test split by seed, grouping records that share the same prompt pair."""
    groups: dict[tuple, list[int]] = {}
    for i in range(len(data)):
        key = tuple(sorted((tuple(data.clean[i].tolist()), tuple(data.patch[i].tolist()))))
        groups.setdefault(key, []).append(i)
    keys = list(groups)
    random.Random(f"split:{data.name}:{seed}").shuffle(keys)
    if len(data) < n_train + n_test:  # too few records: keep the requested proportions
        log.warning("%s: %d records for %d train + %d test; splitting in proportion", data.name, len(data), n_train, n_test)
        n_test = max(1, len(data) * n_test // (n_train + n_test))
        n_train = len(data) - n_test
    train, test = [], []
    for k in keys:
        if len(test) < n_test:
            test += groups[k]
        elif len(train) < n_train:
            train += groups[k]
    if not train or not test:
        raise TaskFileError(
            f"{data.name}: {len(data)} usable records are too few for a train and a test split"
        )
    return data.subset(sorted(train), "train"), data.subset(sorted(test), "test")
