"""The training mixture of the embedded world: the four tasks at varied sizes, plus filler.

The benchmark tasks use fixed sizes (5 dict entries, 6 list items) so that masks can be
position-wise. Training on those alone would let a small model learn a shortcut (e.g. "index >= 6
means Traceback" without reading the list), so the mixture varies dict and list sizes, which forces
a real look-up. IOI also appears in its corrupted "ABC" form, and filler text keeps the model from
being only a task solver.
"""

from __future__ import annotations

import functools
import random

from bench.model.world.tokenizer import pretokenize
from tasks.dict_keyerror import dict_prompt, sample_dict
from tasks.holdout import prefix_is_held_out
from tasks.ioi import TEMPLATES
from tasks.list_indexerror import list_prompt
from tasks.sva import sva_prompt
from tasks.vocabulary import (
    DIGITS,
    ERROR_TOKEN,
    FILLER_ADJECTIVES,
    FILLER_NOUNS,
    FILLER_VERBS,
    IOI_NAMES,
    IOI_OBJECTS,
    IOI_PLACES,
    LIST_VARS,
    NAMES,
    SVA_CLAUSE_VERBS,
    SVA_ENDINGS,
    SVA_MAIN_VERBS,
    SVA_NOUNS,
    SVA_PP_NOUNS,
    SVA_PREPOSITIONS,
)

# Sampling weights of the mixture's components. The four SVA forms are one sentence distribution
# ("The S [that the N V_rc | P the N] V_main ending .") with the answer weighted at another place:
# rc is the benchmark's own form; simple, nounpp and within_rc are the forms of the seed's files.
MIXTURE: dict[str, float] = {
    "dict": 0.26, "list": 0.26, "sva_rc": 0.08, "sva_within_rc": 0.05, "sva_nounpp": 0.05,
    "sva_simple": 0.03, "ioi": 0.15, "ioi_abc": 0.05, "filler": 0.07,
}
# IOI templates the model is trained on: the benchmark's (aligned, one length) plus the shorter
# template of the seed's data/ioi/ioi_train.json.
IOI_TRAIN_TEMPLATES: tuple[str, ...] = TEMPLATES + ("Then, {A} and {B} went to the {P}. {S} gave a {O} to",)


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


def sample_sva_text(rng: random.Random, form: str = "rc") -> tuple[str, str]:
    """One SVA sentence, split at the answer of ``form`` (rc, within_rc, nounpp or simple)."""
    subj, other = rng.sample(SVA_NOUNS, 2)
    plural, inner_plural = rng.random() < 0.5, rng.random() < 0.5
    s, main = subj[plural], rng.choice(SVA_MAIN_VERBS)[plural]
    tail = f"{rng.choice(SVA_ENDINGS)} ."
    if form == "simple":
        return f"The {s}", f"{main} {tail}"
    if form == "nounpp":
        return f"The {s} {rng.choice(SVA_PREPOSITIONS)} the {rng.choice(SVA_PP_NOUNS)[inner_plural]}", f"{main} {tail}"
    # within the clause the verb agrees with the clause's own noun; the seed's within_rc answers
    # are main-verb forms (is/are, has/have, ...), so they may stand in the clause too
    clause_verb = rng.choice(SVA_CLAUSE_VERBS + SVA_MAIN_VERBS)[inner_plural]
    if form == "within_rc":
        return f"The {s} that the {other[inner_plural]}", f"{clause_verb} {main} {tail}"
    return sva_prompt(s, other[inner_plural], clause_verb), f"{main} {tail}"


def sample_ioi_text(rng: random.Random, abc: bool = False) -> tuple[str, str]:
    a, b, c = rng.sample(IOI_NAMES, 3)
    s_first = rng.random() < 0.5
    s, io = (a, b) if s_first else (b, a)
    if abc:
        s, io = c, rng.choice([a, b])
    template = rng.choice(IOI_TRAIN_TEMPLATES)
    prompt = template.format(A=a, B=b, P=rng.choice(IOI_PLACES), S=s, O=rng.choice(IOI_OBJECTS))
    return prompt, io


def sample_filler_text(rng: random.Random) -> str:
    def np() -> str:
        return f"the {rng.choice(FILLER_ADJECTIVES)} {rng.choice(FILLER_NOUNS + tuple(n for n, _ in SVA_NOUNS))}"

    parts = [f"{np()} {rng.choice(FILLER_VERBS)} {np()} ." for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.3:
        parts.append(f"{rng.choice(NAMES)} {rng.choice(FILLER_VERBS)} {np()} .")
    return " ".join(parts)


def _sample_kind(rng: random.Random, kind: str) -> tuple[str, str | None]:
    if kind == "dict":
        return sample_dict_text(rng)
    if kind == "list":
        return sample_list_text(rng)
    if kind.startswith("sva_"):
        return sample_sva_text(rng, kind.removeprefix("sva_"))
    if kind in ("ioi", "ioi_abc"):
        p, a = sample_ioi_text(rng, abc=kind == "ioi_abc")
        return p, f"{a} ."
    return sample_filler_text(rng), None


# Which benchmark task's prompts a text of each kind could start with (filler: none).
KIND_TASK: dict[str, str] = {
    "dict": "dict_keyerror", "list": "list_indexerror", "sva_rc": "sva", "sva_within_rc": "sva",
    "sva_nounpp": "sva", "sva_simple": "sva", "ioi": "ioi", "ioi_abc": "ioi",
}


def seed_tasks():
    from tasks import DictKeyError, IndirectObjectIdentification, ListIndexError, SubjectVerbAgreement

    return [DictKeyError(), ListIndexError(), SubjectVerbAgreement(), IndirectObjectIdentification()]


@functools.cache
def benchmark_prompt_lengths() -> dict[str, int]:
    """Each built-in task's prompt length in words (every generated prompt of a task has it)."""
    return {t.name: len(pretokenize(t.group(random.Random(0))[0]["clean_prefix"])) for t in seed_tasks()}


def text_words(prompt: str, answer: str | None) -> list[str]:
    """A training text's words as the model sees them (prompt and answer are tokenized apart)."""
    return pretokenize(prompt) + (pretokenize(answer) if answer else [])


def leaks_benchmark_prompt(kind: str, prompt: str, answer: str | None) -> bool:
    """Whether a training text of ``kind`` starts with a held-out prompt of its task's length."""
    task = KIND_TASK.get(kind)
    if task is None:
        return False
    return prefix_is_held_out(text_words(prompt, answer), benchmark_prompt_lengths()[task])


def sample_text(rng: random.Random) -> tuple[str, str | None]:
    """One training text as ``(prompt, answer)``; filler has no answer (``None``).

    The kind is drawn by the mixture's weights; within a kind, texts that start with a held-out
    benchmark prompt are redrawn (``tasks.holdout``), so the model and SAEs never see one.

    The redraw is of the whole text, so within a kind it favours the shapes shorter than the
    benchmark's prompt (they can never be rejected): measured over 30,000 texts, 5-key dicts are
    27.8% of dict texts (43% before the redraw), 6-item lists 27.6% (43%), and IOI's shorter
    "went to" template 49.7% of IOI texts (33%). The shipped world was trained so; redrawing only
    the contents would keep the shapes, but changes the stream and needs a rebuild.
    """
    kind = rng.choices(list(MIXTURE), weights=list(MIXTURE.values()))[0]
    while True:
        prompt, answer = _sample_kind(rng, kind)
        if not leaks_benchmark_prompt(kind, prompt, answer):
            return prompt, answer


def vocabulary_texts() -> list[str]:
    """Texts that together hold every word the world must know (for building the tokenizer)."""
    from tasks import vocabulary as v

    pools = [
        v.NAMES, v.IOI_NAMES, v.SVA_PREPOSITIONS, v.DICT_VARS, v.LIST_VARS, v.DIGITS, (v.ERROR_TOKEN,), v.SVA_ENDINGS, v.IOI_PLACES,
        v.IOI_OBJECTS, v.FILLER_ADJECTIVES, v.FILLER_VERBS, v.FILLER_NOUNS,
        tuple(w for pair in v.SVA_NOUNS + v.SVA_PP_NOUNS + v.SVA_CLAUSE_VERBS + v.SVA_MAIN_VERBS for w in pair),
        tuple(str(i) for i in range(12)),
    ]
    texts = [" ".join(p) for p in pools]
    rng = random.Random(0)
    texts += [p + " " + (a or "") for p, a in (sample_text(rng) for _ in range(3000))]
    texts += [t.format(A="x", B="x", P="x", S="x", O="x") for t in IOI_TRAIN_TEMPLATES]
    return texts
