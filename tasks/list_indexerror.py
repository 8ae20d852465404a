"""Code output, list IndexError: is the index inside the list?

Clean: ``>>> data = [4, 7, 5, 6, 8, 1]\\n>>> data[4]\\n`` answers ``8``; the patch uses an index
7-11 and answers ``Traceback``. Pairs are stored in both directions, as in the seed.
"""

from __future__ import annotations

import random

from tasks.base import GeneratedTask, record
from tasks.vocabulary import DIGITS, ERROR_TOKEN, LIST_VARS


def list_prompt(var: str, values: list[str], index: int) -> str:
    return f">>> {var} = [{', '.join(values)}]\n>>> {var}[{index}]\n"


class ListIndexError(GeneratedTask):
    name = "list_indexerror"
    version = "2"  # 2: held-out prompts only (tasks.holdout)
    holdout = True
    description = "list indexing: the element at the index, or Traceback past the end"
    length = 6
    error_indices = range(7, 12)

    def group(self, rng: random.Random) -> list[dict[str, str]]:
        var = rng.choice(LIST_VARS)
        values = [rng.choice(DIGITS) for _ in range(self.length)]
        i = rng.randrange(self.length)
        j = rng.choice(list(self.error_indices))
        valid, error = list_prompt(var, values, i), list_prompt(var, values, j)
        return [
            record(valid, error, values[i], ERROR_TOKEN, "valid->error"),
            record(error, valid, ERROR_TOKEN, values[i], "error->valid"),
        ]
