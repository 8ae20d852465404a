"""The adversarial dict check: its prompts are what it says, and its scores are computed right."""

from __future__ import annotations

import re

import torch

from bench.studies.adversarial import FAMILIES, adversarial_prompts, family_scores, paired_excess
from tasks.holdout import is_held_out


def _dict_line(prompt: str) -> str:
    return prompt.split("\n")[0]


def _query(prompt: str) -> str:
    return prompt.split('["')[1].split('"]')[0]


def test_families_share_a_dict_and_differ_only_where_they_say(embedded_world):
    tok = embedded_world.tokenizer
    fam = adversarial_prompts(50, seed=1)
    assert all(len(fam[f]) == 50 for f in FAMILIES)
    for valid, missing, as_value, other in zip(*(fam[f] for f in FAMILIES)):
        v, m, a, o = (p["prompt"] for p in (valid, missing, as_value, other))
        q = _query(m)
        keys = re.findall(r"'(\w+)':", _dict_line(v))
        assert len(keys) == 5
        assert _query(v) in keys and q not in keys and _query(a) == _query(o) == q
        assert _dict_line(v) == _dict_line(m) and q not in _dict_line(m)
        assert q in re.findall(r"': (\w+)", _dict_line(a))  # the queried name stands as a value
        assert q not in re.findall(r"\w+", _dict_line(o))  # the control's value is another name
        assert is_held_out(v) and is_held_out(m)
        lengths = {len(tok(p)["input_ids"]) for p in (v, m, a, o)}
        assert len(lengths) == 1  # the benchmark's length: one token in the digit's place
        assert all(tok.unk_token_id not in tok(p)["input_ids"] for p in (v, m, a, o))


def test_family_scores_on_a_hand_built_run(embedded_world):
    tok = embedded_world.tokenizer
    prompts = adversarial_prompts(4)["as_value"]
    err = tok("Traceback", add_special_tokens=False)["input_ids"][0]
    seven = tok("7", add_special_tokens=False)["input_ids"][0]

    def run(tokens):  # digit 7 wins by 2 on the first two prompts, Traceback by 1 on the rest
        logits = torch.zeros(tokens.shape[0], tokens.shape[1], len(tok))
        logits[:2, -1, seven] = 2.0
        logits[2:, -1, err] = 1.0
        return logits

    s = family_scores(run, tok, prompts)
    assert s["digit_beats_traceback"] == 0.5 and s["top1_digit"] == 0.5 and s["top1_traceback"] == 0.5
    assert s["top1_right_answer"] == 0.5  # the right answer of as_value is Traceback
    assert abs(s["mean_digit_minus_traceback"] - (2 + 2 - 1 - 1) / 4) < 1e-9
    ex = paired_excess(run, tok, prompts, prompts)  # the same prompts: no excess, zero-width interval
    assert ex == {"diff": 0.0, "lo": 0.0, "hi": 0.0}
