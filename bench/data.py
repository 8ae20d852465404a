"""Tokenized task data and the one task metric.

``TaskData`` holds a task's prompts as token tensors for one model. Building it keeps the records
that fit the model's tokenizer: each answer one token, clean and patch prompts of the same length,
and every prompt of a task of one length (so position-wise masks apply to all). Records that do
not fit are dropped with one counted warning (a real subword tokenizer, e.g. Gemma's, splits the
list index ``10`` into two tokens); only too few usable records is an error. Splitting is by prompt pair, so a pair stored in both directions never straddles train and test.
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


MIN_RECORDS = 2

# Why a record is dropped, in the order the checks run; each is counted in one warning.
_LENGTHS = "with clean/patch lengths differing"
_MULTI = "with a multi-token answer"
_UNKNOWN = "with an answer not in the vocabulary"
_SAME = "with answers that are the same token"
_TASK_LEN = "whose length is not the task's {} tokens"


def _answer_problem(tokenizer, text: str, field: str) -> tuple[str, str] | None:
    """``(reason, detail)`` when ``text`` is not one known token, else ``None``."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        return _MULTI, f"{field} {text!r} is {len(ids)} tokens {pieces}; answers must be exactly one token"
    if tokenizer.unk_token_id is not None and ids[0] == tokenizer.unk_token_id:
        return _UNKNOWN, f"{field} {text!r} is not in the model's vocabulary (tokenizes to {tokenizer.unk_token!r})"
    return None


def tokenize_records(records: list[dict[str, str]], tokenizer, name: str, version: str, source: str) -> TaskData:
    """Tokenize records, dropping those that do not fit the tokenizer; ``source`` names the file or task.

    A record is dropped (and counted, by reason, in one warning) when its clean and patch prompts
    tokenize to different lengths, an answer is not exactly one known token, its two (different)
    answers tokenize to the same token, or its length is not the task's most common length. A
    record whose clean and patch answers are the same string is malformed: an error. Fewer than
    ``MIN_RECORDS`` usable records is an error naming ``source``, the reasons and an example.
    """
    if not records:
        raise TaskFileError(f"{source}: no records")
    rows = []
    dropped: dict[str, list[str]] = {}  # reason -> details ("record i: ...") of the dropped records

    def drop(reason: str, i: int, detail: str) -> None:
        dropped.setdefault(reason, []).append(f"record {i}: {detail}")

    for i, r in enumerate(records):
        if r["clean_answer"] == r["patch_answer"]:
            raise TaskFileError(
                f"{source}: record {i}: clean_answer and patch_answer are the same token {r['clean_answer']!r}"
            )
        c = tokenizer(r["clean_prefix"])["input_ids"]
        p = tokenizer(r["patch_prefix"])["input_ids"]
        if len(c) != len(p):
            drop(_LENGTHS, i, f"clean_prefix is {len(c)} tokens but patch_prefix is {len(p)}; they must be equal")
            continue
        problem = _answer_problem(tokenizer, r["clean_answer"], "clean_answer") or \
            _answer_problem(tokenizer, r["patch_answer"], "patch_answer")
        if problem is not None:
            drop(problem[0], i, problem[1])
            continue
        a = tokenizer(r["clean_answer"], add_special_tokens=False)["input_ids"][0]
        b = tokenizer(r["patch_answer"], add_special_tokens=False)["input_ids"][0]
        if a == b:
            drop(_SAME, i, f"clean_answer {r['clean_answer']!r} and patch_answer {r['patch_answer']!r} are the same token")
            continue
        rows.append((i, c, p, a, b, r["case"]))
    kept = rows
    if rows:
        length, _ = Counter(len(row[1]) for row in rows).most_common(1)[0]
        kept = [row for row in rows if len(row[1]) == length]
        for row in rows:
            if len(row[1]) != length:
                drop(_TASK_LEN.format(length), row[0], f"{len(row[1])} tokens")
    summary = ", ".join(f"{len(v)} {reason}" for reason, v in dropped.items())
    n_dropped = sum(len(v) for v in dropped.values())
    if len(kept) < MIN_RECORDS:
        examples = "; ".join(f"{source}: {v[0]}" for v in dropped.values())
        raise TaskFileError(
            f"{source}: only {len(kept)} of {len(records)} records fit the tokenizer (at least {MIN_RECORDS} needed); "
            f"dropped {summary}; first of each: {examples}"
        )
    if n_dropped:
        log.warning("%s: dropped %d of %d records: %s", source, n_dropped, len(records), summary)
    return TaskData(
        name, version,
        torch.tensor([k[1] for k in kept]), torch.tensor([k[2] for k in kept]),
        torch.tensor([k[3] for k in kept]), torch.tensor([k[4] for k in kept]),
        [k[5] for k in kept],
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
