"""The split of the prompt space between the embedded world's training text and the benchmark.

Why: a benchmark prompt the model (or its SAEs) was trained on is not held out, whatever split the
harness makes later. The embedded world is trained on the same four task families the benchmark
asks about, so the two must be kept apart by construction, for every seed at once:

- a prompt is *held out* when a keyed hash of its words falls in the upper half
  (``is_held_out``); the hash is fixed, so the split does not depend on any seed;
- the built-in task generators keep only records whose clean *and* patch prompts are held out
  (``GeneratedTask.holdout``);
- the world's training sampler (``bench.model.world.corpus``) rejects any text whose prefix, cut at the
  benchmark prompt length of its task family, is held out, so no benchmark prompt is ever a
  prompt *or a prefix* of a training text (a within-clause SVA text ``The S that the N V ...``
  starts with a relative-clause SVA prompt, which is why prefixes are checked, not prompts alone).

The key is the word split of the embedded tokenizer (``pretokenize``), so two spellings that
tokenize alike ("a,b" and "a, b") are one prompt. ``tests/test_holdout.py`` checks the shipped
world's actual training stream against the benchmark prompts of many seeds.
"""

from __future__ import annotations

import hashlib

from bench.model.world.tokenizer import pretokenize

SALT = b"sae-circuit-bench/holdout/v1\0"


def prompt_key(text: str) -> str:
    """The canonical form of a prompt: its words as the embedded tokenizer splits them."""
    return " ".join(pretokenize(text))


def key_is_held_out(key: str) -> bool:
    """Held out iff the first byte of SHA-256(salt + key) is >= 128 (half of all prompts)."""
    return hashlib.sha256(SALT + key.encode("utf-8")).digest()[0] >= 128


def is_held_out(text: str) -> bool:
    """Whether ``text`` belongs to the benchmark's half of the prompt space."""
    return key_is_held_out(prompt_key(text))


def record_is_held_out(record: dict[str, str]) -> bool:
    """A record is usable by the benchmark only when both of its prompts are held out."""
    return is_held_out(record["clean_prefix"]) and is_held_out(record["patch_prefix"])


def prefix_is_held_out(words: list[str], length: int) -> bool:
    """Whether the first ``length`` words of a text form a held-out prompt (False if shorter)."""
    return len(words) >= length and key_is_held_out(" ".join(words[:length]))
