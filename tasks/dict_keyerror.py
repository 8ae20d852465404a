"""Code output, dict KeyError: does the queried name appear among the dict's keys?

Clean: ``>>> age = {'Bob': 9, 'Diego': 6, ...}\\n>>> age["Diego"]\\n`` answers ``6``; the patch
queries a name that is not a key and answers ``Traceback``. As in the seed, each pair is stored in
both directions (valid->error and error->valid), so the logit difference is signed both ways.
"""

from __future__ import annotations

import random

from tasks.base import GeneratedTask, record
from tasks.vocabulary import DICT_VARS, DIGITS, ERROR_TOKEN, NAMES


def dict_prompt(var: str, items: list[tuple[str, str]], query: str) -> str:
    body = ", ".join(f"'{k}': {v}" for k, v in items)
    return f">>> {var} = {{{body}}}\n>>> {var}[\"{query}\"]\n"


def sample_dict(rng: random.Random, n_entries: int) -> tuple[str, list[tuple[str, str]], list[str]]:
    """A variable name, ``n_entries`` (name, digit) items, and the names left out of the dict."""
    names = rng.sample(NAMES, len(NAMES))
    keys, absent = names[:n_entries], names[n_entries:]
    return rng.choice(DICT_VARS), [(k, rng.choice(DIGITS)) for k in keys], absent


class DictKeyError(GeneratedTask):
    name = "dict_keyerror"
    version = "2"  # 2: held-out prompts only (tasks.holdout)
    holdout = True
    description = "dict look-up: the key's digit value, or Traceback for a missing key"
    n_entries = 5

    def group(self, rng: random.Random) -> list[dict[str, str]]:
        var, items, absent = sample_dict(rng, self.n_entries)
        key, value = rng.choice(items)
        missing = rng.choice(absent)
        valid = dict_prompt(var, items, key)
        error = dict_prompt(var, items, missing)
        return [
            record(valid, error, value, ERROR_TOKEN, "valid->error"),
            record(error, valid, ERROR_TOKEN, value, "error->valid"),
        ]
