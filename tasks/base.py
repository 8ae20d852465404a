"""The one task interface: a named, versioned source of records in the seed's schema.

A task only makes records. Splitting, tokenizing and the metric live in the harness so that every
task, built-in or from a user's file, is split and scored the same way.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from tasks.holdout import record_is_held_out
from tasks.schema import load_records


class Task(ABC):
    """A task: ``records(seed)`` gives a pool of distinct records in the seed's schema.

    Subclasses set ``name``, ``version`` (bump it whenever generated records change, so cached
    results keyed on it are invalidated) and ``description``.
    """

    name: str = ""
    version: str = "1"
    description: str = ""
    # Train prompts per seed that ``bench all`` uses for this task when --n-train is not given
    # (None: the run's default). Set where the default would let a method overfit (say measured how).
    n_train: int | None = None

    @abstractmethod
    def records(self, n: int, seed: int) -> list[dict[str, str]]:
        """Up to ``n`` distinct records (distinct clean prompts), deterministic in ``seed``."""


class GeneratedTask(Task):
    """A task built from a generator of one record group (a pair stored in one or both directions).

    ``holdout = True`` (the four built-in tasks) keeps only records whose prompts lie in the
    benchmark's half of the prompt space (``tasks.holdout``), the half the embedded world is never
    trained on. A user's own task leaves it False: the hold-out guards the four built-in task
    families only, so a user's prompts may well be training prompts of the embedded world (the
    seed's own SVA and IOI files largely are); ``python -m bench accuracy`` counts how many.
    """

    holdout: bool = False

    @abstractmethod
    def group(self, rng: random.Random) -> list[dict[str, str]]:
        """One group of records sharing prompts (e.g. a pair and its reverse)."""

    def records(self, n: int, seed: int) -> list[dict[str, str]]:
        rng = random.Random(f"{self.name}:{seed}")
        seen: set[str] = set()
        out: list[dict[str, str]] = []
        tries = 0
        while len(out) < n and tries < 50 * n + 1000:
            tries += 1
            for rec in self.group(rng):
                if self.holdout and not record_is_held_out(rec):
                    continue
                if rec["clean_prefix"] not in seen:
                    seen.add(rec["clean_prefix"])
                    out.append(rec)
        return out[:n]


@dataclass
class FileTask(Task):
    """A user's own task: a JSON or JSONL file in the seed's schema."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.name = self.path.stem
        self.description = f"records from {self.path.name}"
        self._records = load_records(self.path)
        # The version is the file's content, so editing the file invalidates cached results.
        import hashlib

        self.version = "file-" + hashlib.sha256(self.path.read_bytes()).hexdigest()[:12]

    @property
    def n_records(self) -> int:
        """How many records the file holds (``records`` returns at most this many)."""
        return len(self._records)

    def records(self, n: int, seed: int) -> list[dict[str, str]]:
        return list(self._records[:n])


def record(clean: str, patch: str, clean_answer: str, patch_answer: str, case: str) -> dict[str, str]:
    """Build a record in the seed's field order."""
    return {
        "clean_prefix": clean,
        "patch_prefix": patch,
        "clean_answer": clean_answer,
        "patch_answer": patch_answer,
        "case": case,
    }
