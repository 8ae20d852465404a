"""Indirect object identification (Wang et al.).

``Then, Aaron and Laura had a lot of fun at the restaurant. Aaron gave a snack to`` answers
`` Laura`` (the indirect object, IO); the patch is the same template with three fresh names (the
"ABC" corruption), which removes the information about who is who. The record's
``patch_answer`` is the clean subject S, so the one metric of the suite,
``logit[clean_answer] - logit[patch_answer]``, is the IOI logit difference logit(IO) - logit(S).
All templates have the same token length, so position-wise masks apply to every prompt.
"""

from __future__ import annotations

import random

from tasks.base import GeneratedTask, record
from tasks.vocabulary import IOI_NAMES, IOI_OBJECTS, IOI_PLACES

# Templates whose names align token for token (A at 2, B at 4, S at the same position), so a
# position-wise circuit node means one role across prompts. Version 1 also had a "When {A} and
# {B} got to the {P} ..." template with the names one position earlier, which mixed roles in a
# third of the prompts. tests/test_tasks.py asserts the alignment on the embedded tokenizer.
TEMPLATES: tuple[str, ...] = (
    "Then, {A} and {B} had a lot of fun at the {P}. {S} gave a {O} to",
    "Then, {A} and {B} had a long quiet talk at the {P}. {S} gave a {O} to",
)


class IndirectObjectIdentification(GeneratedTask):
    name = "ioi"
    version = "3"  # 3: held-out prompts only; the standard IOI name/place/object pools
    holdout = True
    description = "indirect object identification; patch = same template, three fresh names"
    # On the world before the hold-out, with 128 train prompts the IOI masks overfit (studied circuit
    # F_train - F_test = 0.23 over 3 seeds) and with 512 the gap was 0.09; not re-measured on this
    # world, where the gap at 512 is -0.04 (README, "Train vs test"). The paper trained on ~2,900.
    n_train = 512

    def group(self, rng: random.Random) -> list[dict[str, str]]:
        template = rng.choice(TEMPLATES)
        a, b, c, d, e = rng.sample(IOI_NAMES, 5)
        place, obj = rng.choice(IOI_PLACES), rng.choice(IOI_OBJECTS)
        s_first = rng.random() < 0.5
        s, io = (a, b) if s_first else (b, a)
        clean = template.format(A=a, B=b, P=place, S=s, O=obj)
        patch = template.format(A=c, B=d, P=place, S=e, O=obj)
        return [record(clean, patch, " " + io, " " + s, "ABB" if s_first else "BAB")]
