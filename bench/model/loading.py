"""Load a preset into a :class:`World`: tokenizer + SAE-spliced model, offline-first.

The embedded world is read from safetensors/JSON files. Hub presets go through
``HookedTransformer.from_pretrained_no_processing`` and ``SAE.from_pretrained``; without hub access
they fail at once with one line naming what could not be fetched (the CLI sets
``HF_HUB_OFFLINE=1`` unless ``BENCH_ONLINE=1``, so nothing waits on network retries). The SAEs
are loaded first, in the preset's dtype, and the model is loaded with the ``from_pretrained``
options the SAEs were trained under (their ``model_from_pretrained_kwargs``; e.g.
``center_writing_weights`` for GPT-2 small's residual SAEs). Both read the local Hugging Face cache
(``HF_HUB_CACHE``), so a prepared cache runs offline: ``tests/test_hub_cache.py`` builds one with tiny
random weights in the real repositories' layouts and runs a preset end to end from it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError, InputError
from bench.model.presets import Preset, get_preset
from bench.model.spliced import SplicedModel


@dataclass
class World:
    """Everything a run needs from the model side."""

    preset: Preset
    spliced: SplicedModel
    tokenizer: object
    sae_ids: tuple[str, ...]
    fingerprint: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def model_name(self) -> str:
        return self.preset.model


def embedded_dir() -> Path:
    from bench.model.world.artifacts import EMBEDDED_DIR

    return Path(os.environ.get("BENCH_WORLD_DIR", EMBEDDED_DIR))


def _json_file(path: Path) -> dict:
    """A world's JSON record ({} if absent); InputError naming the file if it is not a JSON object."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def load_world(preset: str | Preset = "embedded", error_policy: str = "drop", device: str = "cpu",
               world_dir: str | Path | None = None) -> World:
    """Load ``preset`` (name, TOML path or Preset) with the given error-term policy."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    if preset.is_embedded:
        return _load_embedded(preset, Path(world_dir) if world_dir else embedded_dir(), error_policy, device)
    return _load_hub(preset, error_policy, device)


def _load_embedded(preset: Preset, root: Path, error_policy: str, device: str) -> World:
    from sae_lens import SAE

    from bench.model.world.artifacts import file_hashes, layer_key, load_model
    from bench.model.world.tokenizer import load_tokenizer
    from bench.model.world.variants import model_dir_name, sae_dir_name

    model_dir, sae_root = root / model_dir_name(preset.model), root / sae_dir_name(preset.sae_release)
    if not (model_dir / "model.safetensors").is_file():
        how = ("run 'python -m bench train' to build it" if model_dir.name == "model" else
               f"run 'python -m bench train --variant {model_dir.name.removeprefix('model-')}' to build it")
        raise InputError(f"{model_dir}: no embedded world here (model.safetensors missing); {how}")
    if not sae_root.is_dir():
        raise InputError(f"{sae_root}: no SAEs for preset {preset.name!r}; run 'python -m bench train --variant "
                         f"{sae_root.name.removeprefix('saes-')}' to build them")
    tokenizer = load_tokenizer(root / "tokenizer")
    model = load_model(model_dir, tokenizer, device=device, dtype=preset.dtype)
    ids = list(preset.sae_ids)
    if ids == ["*"]:
        ids = sorted((p.name for p in sae_root.iterdir() if (p / "cfg.json").is_file()), key=layer_key)
    saes = {}
    for sae_id in ids:
        path = sae_root / sae_id
        if not (path / "cfg.json").is_file():
            raise InputError(f"{path}: SAE {sae_id!r} of preset {preset.name!r} not found in the world directory")
        try:
            sae = SAE.load_from_disk(str(path), device=device, dtype=preset.dtype)
        except Exception as exc:  # noqa: BLE001 - a broken SAE directory is a one-line input error
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise InputError(f"{path}: cannot load SAE ({type(exc).__name__}: {first[:300]})") from None
        saes[sae.cfg.metadata.hook_name or sae_id] = sae
    # the fingerprint covers the files this preset reads (tokenizer, its model, its SAEs), so building
    # a variant does not invalidate the cached cells of another preset
    hashes = {k: v for k, v in file_hashes(root).items() if k.split("/")[0] in ("tokenizer", model_dir.name, sae_root.name)}
    fp = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16]
    meta, variants = (_json_file(root / name) for name in ("world.json", "variants.json"))
    variant = sae_root.name.removeprefix("saes").removeprefix("-")
    extra = {"variant": variants.get(variant, {})} if variant else {}
    spliced = SplicedModel(model, saes, error_policy)
    return World(preset, spliced, tokenizer, tuple(ids), fp, {"file_hashes": hashes, "world": meta, **extra})


def _hub_failure(preset: Preset, what: str, exc: BaseException) -> BenchError:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    how = ("the Hugging Face hub is switched off (HF_HUB_OFFLINE=1; set BENCH_ONLINE=1 where the hub is reachable)"
           if offline else "the Hugging Face hub could not be reached")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return BenchError(f"preset {preset.name!r}: could not fetch {what}: {how} ({type(exc).__name__}: {first[:300]})")


def load_hub_saes(preset: Preset, device: str = "cpu") -> dict[str, object]:
    """The preset's SAEs through ``SAE.from_pretrained(release, id)``, keyed by hook name, in the preset's dtype.

    Reads the local Hugging Face cache first (``HF_HUB_CACHE``); with ``HF_HUB_OFFLINE=1`` nothing else.
    """
    from sae_lens import SAE

    saes = {}
    for sae_id in preset.sae_ids:
        try:
            sae = SAE.from_pretrained(preset.sae_release, sae_id, device=device, dtype=preset.dtype)
        except Exception as exc:  # noqa: BLE001 - any failure here is 'could not fetch'
            raise _hub_failure(preset, f"SAE {preset.sae_release}/{sae_id}", exc) from None
        hook = sae.cfg.metadata.hook_name
        if not hook:
            raise InputError(f"preset {preset.name!r}: SAE {preset.sae_release}/{sae_id} names no hook")
        if hook in saes:
            raise InputError(f"preset {preset.name!r}: two SAEs at hook {hook!r}")
        saes[hook] = sae
    return saes


def model_kwargs_for(saes: dict[str, object], preset: Preset) -> dict:
    """The ``from_pretrained`` options the SAEs were trained under (``cfg.metadata.model_from_pretrained_kwargs``).

    gpt2-small-res-jb's SAEs read the residual stream of a model loaded with
    ``center_writing_weights=True``; loading the model without it feeds them a different residual.
    Gemma Scope names none. SAEs of one preset that disagree are an input error.
    """
    found: dict[str, dict] = {}
    for hook, sae in saes.items():
        kw = dict(getattr(sae.cfg.metadata, "model_from_pretrained_kwargs", None) or {})
        found[hook] = kw
    distinct = {json.dumps(v, sort_keys=True) for v in found.values()}
    if len(distinct) > 1:
        raise InputError(f"preset {preset.name!r}: its SAEs were trained on differently loaded models: {found}")
    return next(iter(found.values()), {}) if found else {}


def load_hub_model(preset: Preset, device: str = "cpu", model_kwargs: dict | None = None):
    """``HookedTransformer.from_pretrained_no_processing(preset.model)`` plus the SAEs' loading options."""
    import torch
    from transformer_lens import HookedTransformer

    try:
        return HookedTransformer.from_pretrained_no_processing(
            preset.model, device=device, dtype=getattr(torch, preset.dtype), **(model_kwargs or {})
        )
    except Exception as exc:  # noqa: BLE001
        raise _hub_failure(preset, f"model {preset.model!r}", exc) from None


def _load_hub(preset: Preset, error_policy: str, device: str) -> World:
    saes = load_hub_saes(preset, device)
    kwargs = model_kwargs_for(saes, preset)
    model = load_hub_model(preset, device, kwargs)
    fp = hashlib.sha256(repr((preset.model, preset.sae_release, preset.sae_ids, preset.dtype,
                              sorted(kwargs.items()))).encode()).hexdigest()[:16]
    meta = {"model_from_pretrained_kwargs": kwargs}
    return World(preset, SplicedModel(model, saes, error_policy), model.tokenizer, tuple(preset.sae_ids), fp, meta)
