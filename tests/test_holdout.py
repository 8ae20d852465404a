"""Held out means held out: the benchmark's prompts are never the world's training prompts.

The split is by construction (``tasks.holdout``): the built-in generators keep held-out prompts
only and the training sampler redraws texts that start with one. These tests check the
construction and then the shipped world's real training streams, replayed from its world.json.
"""

from __future__ import annotations

import json
import random

import pytest

from bench.model.world.corpus import seed_tasks
from tasks.holdout import is_held_out, prompt_key, record_is_held_out

# Every seed a committed run, control or sweep uses, plus more, and the world quality table's seed.
SEEDS = tuple(range(10)) + (12345,)
N_RECORDS = 2 * (512 + 128)  # records drawn per seed by the largest default split (IOI: 512 train + 128 test)


def benchmark_prompt_keys() -> set[str]:
    keys = set()
    for task in seed_tasks():
        for seed in SEEDS:
            for r in task.records(N_RECORDS, seed=seed):
                keys.add(prompt_key(r["clean_prefix"]))
                keys.add(prompt_key(r["patch_prefix"]))
    return keys


def test_key_is_the_tokenizers_word_split_and_half_of_prompts_are_held_out():
    assert prompt_key(">>> xs = [1,2]\n") == prompt_key(">>> xs = [1, 2]\n") == ">>> xs = [ 1 , 2 ] ⏎"
    rng = random.Random(0)
    share = sum(is_held_out(f"The {rng.random()}") for _ in range(4000)) / 4000
    assert 0.46 < share < 0.54  # a fair coin over 4000 draws: sd 0.008


@pytest.mark.parametrize("task", seed_tasks(), ids=lambda t: t.name)
def test_builtin_generators_yield_held_out_prompts_only_for_any_seed(task):
    for seed in (0, 7, 99991):
        recs = task.records(600, seed=seed)
        assert len(recs) == 600 and all(record_is_held_out(r) for r in recs)


def test_training_sampler_never_starts_a_text_with_a_held_out_prompt_of_its_task():
    from bench.model.world.corpus import KIND_TASK, MIXTURE, _sample_kind, benchmark_prompt_lengths, sample_text, text_words
    from tasks.holdout import prefix_is_held_out

    lengths = benchmark_prompt_lengths()
    rng = random.Random(3)
    rejected = 0
    for kind in MIXTURE:  # the raw generators do produce such texts: the sampler must redraw them
        for _ in range(200):
            p, a = _sample_kind(rng, kind)
            rejected += kind in KIND_TASK and prefix_is_held_out(text_words(p, a), lengths[KIND_TASK[kind]])
    assert rejected > 300
    keys = benchmark_prompt_keys()
    by_len = {len(k.split(" ")) for k in keys}
    for _ in range(20000):
        words = text_words(*sample_text(rng))
        assert not any(" ".join(words[:n]) in keys for n in by_len if n <= len(words))


def test_shipped_world_was_never_trained_on_a_benchmark_prompt():
    # The model's 4000 x 64 training texts and the SAEs' 6000 prompts, replayed exactly from the
    # shipped world.json, against every benchmark prompt of SEEDS: none is a training prompt or the
    # start of a training text.
    from bench.model.world.artifacts import EMBEDDED_DIR
    from bench.model.world.corpus import benchmark_prompt_lengths, text_words
    from bench.model.world.provenance import replay, replay_mismatch, training_texts, world_config_from_json

    stats = json.loads((EMBEDDED_DIR / "world.json").read_text())
    cfg = world_config_from_json(stats)
    keys = benchmark_prompt_keys()
    # the replay must also find what was trained on, as prompts and as prefixes (so the check can
    # fail): every 100th of the first 3000 model texts and of the SAE prompts, and their first words
    # at each benchmark length; one replay answers both, and its fingerprint proves it is the shipped stream
    from bench.model.world.build import sae_texts

    texts = [t for _, t in zip(range(3000), training_texts(cfg))][::100]
    texts += [(p, None) for p in sae_texts(cfg.saes)[::100]]  # the SAEs' stream is scanned too
    prompts = {prompt_key(p) for p, _ in texts}
    prefixes = {" ".join(text_words(p, a)[:n]) for p, a in texts for n in benchmark_prompt_lengths().values()
                if n < len(text_words(p, a))}
    r = replay(cfg, keys | prompts | prefixes)
    assert replay_mismatch(stats, r.fingerprints) is None  # the stream the shipped world recorded (SHA-256)
    assert not (r.seen.as_prefix & keys), sorted(r.seen.as_prefix & keys)[:5]
    assert r.seen.as_prompt >= prompts and r.seen.as_prefix == prompts | prefixes


def test_the_key_is_what_the_tokenizer_makes(embedded_world):
    # the hold-out key (pretokenize) must be the real tokenizer's split, else the two could disagree
    tok = embedded_world.tokenizer
    for task in seed_tasks():
        for r in task.records(200, seed=0):
            for p in (r["clean_prefix"], r["patch_prefix"]):
                ids = tok(p)["input_ids"]
                assert tok.unk_token_id not in ids
                assert tok.convert_ids_to_tokens(ids[1:]) == prompt_key(p).split(" ")
