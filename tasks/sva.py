"""Subject-verb agreement across a relative clause.

``The friends that the dancer visits`` answers `` go``; the patch changes only the subject's
number (``The friend that the dancer visits`` -> `` goes``). The clause's own noun and verb have a
random number, so the nearest noun is a distractor. Clean subjects are singular or plural at random.
"""

from __future__ import annotations

import random

from tasks.base import GeneratedTask, record
from tasks.vocabulary import SVA_CLAUSE_VERBS, SVA_MAIN_VERBS, SVA_NOUNS


def sva_prompt(subject: str, clause_noun: str, clause_verb: str) -> str:
    return f"The {subject} that the {clause_noun} {clause_verb}"


class SubjectVerbAgreement(GeneratedTask):
    name = "sva"
    version = "2"  # 2: held-out prompts only; the seed's nouns and verbs added to the pools
    holdout = True
    description = "subject-verb agreement across a relative clause"

    def group(self, rng: random.Random) -> list[dict[str, str]]:
        subj, other = rng.sample(SVA_NOUNS, 2)
        clause_plural = rng.random() < 0.5
        clause_noun = other[clause_plural]
        clause_verb = rng.choice(SVA_CLAUSE_VERBS)[clause_plural]
        verb = rng.choice(SVA_MAIN_VERBS)
        plural = rng.random() < 0.5
        clean = sva_prompt(subj[plural], clause_noun, clause_verb)
        patch = sva_prompt(subj[not plural], clause_noun, clause_verb)
        case = "plural" if plural else "singular"
        return [record(clean, patch, " " + verb[plural], " " + verb[not plural], case)]
