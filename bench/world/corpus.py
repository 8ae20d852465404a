"""The training mixture of the embedded world: the four tasks at varied sizes, plus filler.

The benchmark tasks use fixed sizes (5 dict entries, 6 list items) so that masks can be
position-wise. Training on those alone would let a small model learn a shortcut (e.g. "index >= 6
means Traceback" without reading the list), so the mixture varies dict and list sizes, which forces
a real look-up. IOI also appears in its corrupted "ABC" form, and filler text keeps the model from
being only a task solver.
"""

from __future__ import annotations

import random

from tasks.dict_keyerror import dict_prompt, sample_dict
from tasks.ioi import TEMPLATES
from tasks.list_indexerror import list_prompt
from tasks.sva import sva_prompt
from tasks.vocabulary import (
    DIGITS,
    ERROR_TOKEN,
    FILLER_ADJECTIVES,
    FILLER_NOUNS,
    FILLER_VERBS,
    IOI_OBJECTS,
    IOI_PLACES,
    LIST_VARS,
    NAMES,
    SVA_CLAUSE_VERBS,
    SVA_ENDINGS,
    SVA_MAIN_VERBS,
    SVA_NOUNS,
)

# Sampling weights of the mixture's components.
MIXTURE: dict[str, float] = {"dict": 0.3, "list": 0.3, "sva": 0.12, "ioi": 0.13, "ioi_abc": 0.05, "filler": 0.1}


def sample_dict_text(rng: random.Random) -> tuple[str, str]:
    n = rng.choice([1, 2, 3, 4, 5, 5, 5])
    var, items, absent = sample_dict(rng, n)
    if rng.random() < 0.5:
        key, value = rng.choice(items)
        return dict_prompt(var, items, key), value
    return dict_prompt(var, items, rng.choice(absent)), ERROR_TOKEN


def sample_list_text(rng: random.Random) -> tuple[str, str]:
    n = rng.choice([2, 3, 4, 5, 6, 6, 6])
    var = rng.choice(LIST_VARS)
    values = [rng.choice(DIGITS) for _ in range(n)]
    if rng.random() < 0.5:
        i = rng.randrange(n)
        return list_prompt(var, values, i), values[i]
    return list_prompt(var, values, rng.randrange(n, 12)), ERROR_TOKEN


def sample_sva_text(rng: random.Random) -> tuple[str, str]:
    subj, other = rng.sample(SVA_NOUNS, 2)
    plural, clause_plural = rng.random() < 0.5, rng.random() < 0.5
    prompt = sva_prompt(subj[plural], other[clause_plural], rng.choice(SVA_CLAUSE_VERBS)[clause_plural])
    return prompt, rng.choice(SVA_MAIN_VERBS)[plural]


def sample_ioi_text(rng: random.Random, abc: bool = False) -> tuple[str, str]:
    a, b, c = rng.sample(NAMES, 3)
    s_first = rng.random() < 0.5
    s, io = (a, b) if s_first else (b, a)
    if abc:
        s, io = c, rng.choice([a, b])
    prompt = rng.choice(TEMPLATES).format(A=a, B=b, P=rng.choice(IOI_PLACES), S=s, O=rng.choice(IOI_OBJECTS))
    return prompt, io


def sample_filler_text(rng: random.Random) -> str:
    def np() -> str:
        return f"the {rng.choice(FILLER_ADJECTIVES)} {rng.choice(FILLER_NOUNS + tuple(n for n, _ in SVA_NOUNS))}"

    parts = [f"{np()} {rng.choice(FILLER_VERBS)} {np()} ." for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.3:
        parts.append(f"{rng.choice(NAMES)} {rng.choice(FILLER_VERBS)} {np()} .")
    return " ".join(parts)


def sample_text(rng: random.Random) -> tuple[str, str | None]:
    """One training text as ``(prompt, answer)``; filler has no answer (``None``)."""
    kind = rng.choices(list(MIXTURE), weights=list(MIXTURE.values()))[0]
    if kind == "dict":
        return sample_dict_text(rng)
    if kind == "list":
        return sample_list_text(rng)
    if kind == "sva":
        p, a = sample_sva_text(rng)
        return p, f"{a} {rng.choice(SVA_ENDINGS)} ."
    if kind in ("ioi", "ioi_abc"):
        p, a = sample_ioi_text(rng, abc=kind == "ioi_abc")
        return p, f"{a} ."
    return sample_filler_text(rng), None


def vocabulary_texts() -> list[str]:
    """Texts that together hold every word the world must know (for building the tokenizer)."""
    from tasks import vocabulary as v

    pools = [
        v.NAMES, v.DICT_VARS, v.LIST_VARS, v.DIGITS, (v.ERROR_TOKEN,), v.SVA_ENDINGS, v.IOI_PLACES,
        v.IOI_OBJECTS, v.FILLER_ADJECTIVES, v.FILLER_VERBS, v.FILLER_NOUNS,
        tuple(w for pair in v.SVA_NOUNS + v.SVA_CLAUSE_VERBS + v.SVA_MAIN_VERBS for w in pair),
        tuple(str(i) for i in range(12)),
    ]
    texts = [" ".join(p) for p in pools]
    rng = random.Random(0)
    texts += [p + " " + (a or "") for p, a in (sample_text(rng) for _ in range(3000))]
    texts += [t.format(A="x", B="x", P="x", S="x", O="x") for t in TEMPLATES]
    return texts
