"""``python -m bench adversarial``: test the dict circuit's hypothesis with prompts built to fool it.

The paper's case study (dict KeyError on Gemma-2-9B) read its circuit as "does the queried name
appear earlier in the prompt?" rather than "is it a key?", and fooled the model by putting the
name among the dict's *values* (a digit at 66%, Traceback 7.8%). The embedded world's studied
dict circuit has the same shape: its nodes sit at the queried name and at the last position, with
early latents on the name (case-study figure). If the model only asks whether the name was seen
before, a prompt whose queried name is a value, not a key, should make it answer a digit.

Prompt families, all with the benchmark's five entries and token length; ``valid`` and ``missing``
are benchmark-form prompts, drawn from the held-out half of the prompt space:

* ``valid``: the name is a key (answer: its digit);
* ``missing``: the name is nowhere (answer: Traceback);
* ``as_value``: one entry's value is the queried name, which is not a key (answer: Traceback;
  *fooled* when a digit beats Traceback);
* ``other_value``: the same entry holding another absent name instead (answer: Traceback). The
  control for ``as_value``: a name where a digit belongs, never seen in training, may confuse the
  model on its own; only the excess of ``as_value`` over ``other_value`` is the queried name's doing.

Measured for the model and for the model with every SAE spliced (error dropped): per family, the
share of prompts where the best digit beats Traceback and the top-1 answer. Writes
``OUT/adversarial_dict.json`` (numbers and every prompt used) and ``OUT/adversarial_dict.md``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from tasks.dict_keyerror import DictKeyError, dict_prompt, sample_dict
from tasks.holdout import is_held_out
from tasks.vocabulary import DIGITS, ERROR_TOKEN

FAMILIES = ("valid", "missing", "as_value", "other_value")
EXPECTED = {"valid": "digit", "missing": ERROR_TOKEN, "as_value": ERROR_TOKEN, "other_value": ERROR_TOKEN}


def _with_name_value(var: str, items: list[tuple[str, str]], slot: int, value_name: str, query: str) -> str:
    """A dict prompt whose entry ``slot`` holds the bare name ``value_name`` instead of a digit.

    Bare, not quoted: ``'Rob': Diego,`` tokenizes exactly like ``'Rob': 9,`` (one token in the
    digit's place), so the prompt keeps the benchmark's length and positions and every token is one
    the model was trained on; a quoted ``'Diego',`` would bring punctuation runs it never saw."""
    items = [(k, value_name if i == slot else v) for i, (k, v) in enumerate(items)]
    return dict_prompt(var, items, query)


def adversarial_prompts(n: int, seed: int = 0) -> dict[str, list[dict]]:
    """``n`` prompts per family; each family's prompt i shares its dict with the others' prompt i."""
    rng = random.Random(f"adversarial-dict:{seed}")
    n_entries = DictKeyError.n_entries
    out: dict[str, list[dict]] = {f: [] for f in FAMILIES}
    while len(out["valid"]) < n:
        var, items, absent = sample_dict(rng, n_entries)
        key, value = rng.choice(items)
        query, other = rng.sample(absent, 2)
        slot = rng.randrange(n_entries)  # the entry whose value becomes a name (as_value, other_value)
        valid, missing = dict_prompt(var, items, key), dict_prompt(var, items, query)
        if not (is_held_out(valid) and is_held_out(missing)):  # never a prompt the world was trained on
            continue
        out["valid"].append({"prompt": valid, "answer": value})
        out["missing"].append({"prompt": missing, "answer": ERROR_TOKEN})
        out["as_value"].append({"prompt": _with_name_value(var, items, slot, query, query), "answer": ERROR_TOKEN})
        out["other_value"].append({"prompt": _with_name_value(var, items, slot, other, query), "answer": ERROR_TOKEN})
    return out


@torch.no_grad()
def prompt_gaps(run, tokenizer, prompts: list[dict]) -> dict[str, list]:
    """Per prompt: best digit − Traceback logit, whether the top-1 token is a digit / Traceback /
    the prompt's own answer. All families share the benchmark's token length, so one batch."""
    digit_ids = torch.tensor([tokenizer(d, add_special_tokens=False)["input_ids"][0] for d in DIGITS])
    err_id = tokenizer(ERROR_TOKEN, add_special_tokens=False)["input_ids"][0]
    answer_ids = torch.tensor([tokenizer(p["answer"], add_special_tokens=False)["input_ids"][0] for p in prompts])
    logits = run(torch.tensor([tokenizer(p["prompt"])["input_ids"] for p in prompts]))[:, -1]
    top = logits.argmax(-1)
    return {"gap": (logits[:, digit_ids].max(-1).values - logits[:, err_id]).tolist(),
            "top_digit": torch.isin(top, digit_ids).tolist(), "top_traceback": (top == err_id).tolist(),
            "top_answer": (top == answer_ids).tolist()}


def family_scores(run, tokenizer, prompts: list[dict]) -> dict[str, float]:
    """Share of prompts where the best digit beats Traceback, top-1 shares, mean logit gap."""
    g = prompt_gaps(run, tokenizer, prompts)
    n = len(prompts)
    return {"digit_beats_traceback": sum(x > 0 for x in g["gap"]) / n, "top1_digit": sum(g["top_digit"]) / n,
            "top1_traceback": sum(g["top_traceback"]) / n, "top1_right_answer": sum(g["top_answer"]) / n,
            "mean_digit_minus_traceback": sum(g["gap"]) / n, "n": n}


def paired_excess(run, tokenizer, a: list[dict], b: list[dict], n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """Share fooled on ``a`` minus share fooled on ``b`` (prompt i of each shares its dict), with a
    95% bootstrap interval over prompt pairs."""
    import numpy as np

    fa = np.array(prompt_gaps(run, tokenizer, a)["gap"]) > 0
    fb = np.array(prompt_gaps(run, tokenizer, b)["gap"]) > 0
    d = fa.astype(float) - fb.astype(float)
    idx = np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))
    boots = d[idx].mean(1)
    return {"diff": float(d.mean()), "lo": float(np.quantile(boots, 0.025)), "hi": float(np.quantile(boots, 0.975))}


def run_adversarial(preset: str, out: Path, n: int = 200, seed: int = 0) -> dict:
    from bench.model.loading import load_world

    world = load_world(preset)
    prompts = adversarial_prompts(n, seed)
    runs = {"model": world.spliced.model, "spliced_drop_error": world.spliced.with_policy("drop").run}
    scores = {name: {f: family_scores(run, world.tokenizer, prompts[f]) for f in FAMILIES} for name, run in runs.items()}
    result = {
        "preset": preset, "n_per_family": n, "seed": seed, "expected": EXPECTED, "scores": scores,
        # fooled = a digit wins where Traceback is right; the excess over the control is the name's doing
        "fooled_excess_over_control": {k: paired_excess(run, world.tokenizer, prompts["as_value"], prompts["other_value"])
                                       for k, run in runs.items()},
        "prompts": prompts,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "adversarial_dict.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "adversarial_dict.md").write_text(render(result))
    return result


def render(result: dict) -> str:
    lines = ["# Adversarial check of the dict circuit's hypothesis", "",
             f"Preset `{result['preset']}`, {result['n_per_family']} prompts per family (seed {result['seed']}); "
             "regenerate with `python -m bench adversarial`. Families and why: `bench/studies/adversarial.py`.", "",
             "| run | family | right answer | digit beats Traceback | top-1 digit | top-1 Traceback | top-1 right answer "
             "| mean (best digit − Traceback) |",
             "|---|---|---|---|---|---|---|---|"]
    for run, fam in result["scores"].items():
        for f, s in fam.items():
            lines.append(f"| {run} | {f} | {result['expected'][f]} | {s['digit_beats_traceback']:.3f} | {s['top1_digit']:.3f} | "
                         f"{s['top1_traceback']:.3f} | {s['top1_right_answer']:.3f} | {s['mean_digit_minus_traceback']:+.2f} |")
    lines += ["", "Fooled by the queried name beyond the control (share where a digit wins, as_value − other_value, "
              "paired 95% bootstrap interval over prompts): "
              + ", ".join(f"{k} {v['diff']:+.3f} [{v['lo']:+.3f}, {v['hi']:+.3f}]"
                          for k, v in result["fooled_excess_over_control"].items()), "",
              "Example prompts (prompt i of each family shares its dict):", ""]
    for f in FAMILIES:
        lines.append(f"- `{f}`: `{result['prompts'][f][0]['prompt']!r}` → `{result['prompts'][f][0]['answer']}`")
    return "\n".join(lines) + "\n"
