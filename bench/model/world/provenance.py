"""Which prompts a built world was trained on: the model's and the SAEs' text streams, replayed.

Both streams are deterministic in the world's config (``world.json``), so they can be regenerated
exactly instead of being shipped. ``replay`` regenerates both in one pass: their fingerprints (to
prove the replay is the recorded stream, ``replay_mismatch``) and, for any prompts, whether each
one was a training prompt or the start of a training text, for the model (``training_batches``)
and for the SAEs (``sae_texts``; the variants' SAEs are trained on the same texts). The hold-out
test and ``bench accuracy`` use it; replaying the shipped streams takes about eight seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Seen:
    """Per prompt key: seen as a training prompt, or only as the start of a longer training text."""

    as_prompt: frozenset[str]
    as_prefix: frozenset[str]  # includes as_prompt

    def count(self, keys: Iterable[str]) -> dict[str, int]:
        keys = list(keys)
        return {"prompts": len(keys), "seen_as_training_prompt": sum(k in self.as_prompt for k in keys),
                "seen_as_training_prefix": sum(k in self.as_prefix for k in keys)}


def world_config_from_json(stats: dict):
    """The ``WorldConfig`` a ``world.json`` was built with (KeyError/TypeError/AttributeError if malformed)."""
    from bench.model.world.build import WorldConfig
    from bench.model.world.train_model import ModelTrainConfig
    from bench.model.world.train_saes import SAETrainConfig

    cfg = stats["config"]
    saes = {k: (tuple(v) if k == "layers" else v) for k, v in cfg["saes"].items()
            if k in SAETrainConfig.__dataclass_fields__}
    model = {k: v for k, v in cfg["model"].items() if k in ModelTrainConfig.__dataclass_fields__}
    return WorldConfig(model=ModelTrainConfig(**model), saes=SAETrainConfig(**saes))


def training_texts(cfg) -> Iterator[tuple[str, str | None]]:
    """Every ``(prompt, answer)`` the model was trained on, then every SAE training prompt (answer None)."""
    from bench.model.world.build import sae_texts
    from bench.model.world.train_model import training_batches

    for batch in training_batches(cfg.model):
        yield from batch
    for p in sae_texts(cfg.saes):
        yield p, None


@dataclass(frozen=True)
class Replay:
    """One pass over a world's training streams: their fingerprints and which wanted keys they hold."""

    fingerprints: dict[str, dict]  # {"model": {...}, "sae_texts": {...}} as world.json records them
    seen: Seen


def replay(cfg, keys: Iterable[str] = ()) -> Replay:
    """Regenerate both training streams of ``cfg`` once: fingerprint them, and find which of ``keys``
    (``tasks.holdout.prompt_key`` forms) was a training prompt or the start of a training text."""
    from bench.model.world.build import sae_texts
    from bench.model.world.corpus import text_words
    from bench.model.world.tokenizer import pretokenize
    from bench.model.world.train_model import TextFingerprint, training_batches

    wanted = set(keys)
    by_len = {len(k.split(" ")) for k in wanted}
    as_prompt, as_prefix = set(), set()

    def look(texts) -> None:
        if not wanted:
            return
        for prompt, answer in texts:
            p_key = " ".join(pretokenize(prompt))
            if p_key in wanted:
                as_prompt.add(p_key)
            words = text_words(prompt, answer)
            for n in by_len:
                if n <= len(words):
                    k = " ".join(words[:n])
                    if k in wanted:
                        as_prefix.add(k)

    model_fp, sae_fp = TextFingerprint(), TextFingerprint()
    for batch in training_batches(cfg.model):
        model_fp.update(batch)
        look(batch)
    sae = [(t, None) for t in sae_texts(cfg.saes)]
    sae_fp.update(sae)
    look(sae)
    return Replay({"model": model_fp.record(), "sae_texts": sae_fp.record()},
                  Seen(frozenset(as_prompt), frozenset(as_prefix | as_prompt)))


def recorded_fingerprints(stats: dict) -> dict[str, dict]:
    """The fingerprints a ``world.json`` recorded at build time; ValueError naming what is missing."""
    try:
        want = {"model": {k: stats["model"][k] for k in ("n_texts", "texts_sha256")},
                "sae_texts": {k: stats["sae_texts"][k] for k in ("n_texts", "texts_sha256")}}
    except (KeyError, TypeError) as exc:
        raise ValueError(f"world.json records no training-stream fingerprint ({type(exc).__name__}: {exc}); "
                         "rebuild it with 'python -m bench train'") from None
    return want


def replay_mismatch(stats: dict, fingerprints: dict[str, dict]) -> str | None:
    """Why ``fingerprints`` are not the streams the ``world.json`` ``stats`` was trained on, or None."""
    if fingerprints == recorded_fingerprints(stats):
        return None
    return ("world.json: the training corpus code no longer reproduces the texts this world was trained on; "
            "rebuild it with 'python -m bench train'")
