"""On-disk form of a world: tokenizer dir, model (TL config JSON + safetensors), SAELens SAE dirs.

Layout of a world directory::

    tokenizer/            tokenizer.json, tokenizer_config.json  (HF fast tokenizer)
    model/config.json     HookedTransformerConfig arguments
    model/model.safetensors
    saes/<hook>/          cfg.json, sae_weights.safetensors     (SAELens format)
    world.json            how it was trained and what it measured

Everything is safetensors or JSON: nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

EMBEDDED_DIR = Path(__file__).parent / "embedded"


def save_model(model, kwargs: dict, out_dir: Path) -> None:
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(kwargs, indent=2, sort_keys=True) + "\n")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out_dir / "model.safetensors"))


def load_model(model_dir: Path, tokenizer, device: str = "cpu", dtype: str = "float32"):
    """Rebuild the HookedTransformer from ``config.json`` and load its safetensors weights."""
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    kwargs = json.loads((model_dir / "config.json").read_text())
    cfg = HookedTransformerConfig(**kwargs, device=device, dtype=getattr(torch, dtype))
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    state = load_file(str(model_dir / "model.safetensors"), device=device)
    model.load_state_dict(state, strict=False)
    missing = set(model.state_dict()) - set(state)
    # Buffers TL rebuilds itself (causal masks, rotary tables) need not be in the file.
    missing = {m for m in missing if not m.endswith(("mask", "IGNORE", "rotary_sin", "rotary_cos"))}
    if missing:
        raise ValueError(f"{model_dir / 'model.safetensors'}: missing weights {sorted(missing)[:5]}")
    model.eval()
    return model


def file_hashes(world_dir: Path) -> dict[str, str]:
    """SHA-256 (first 16 hex) of every weight and config file, for cache keys and run.json."""
    out = {}
    for p in sorted(world_dir.rglob("*")):
        if p.is_file() and p.suffix in (".safetensors", ".json") and p.name not in ("world.json", "variants.json"):
            out[str(p.relative_to(world_dir))] = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
    return out


def layer_key(hook: str) -> tuple[int, str]:
    """Sort key of an SAE hook name by its layer ("blocks.10.…" after "blocks.9.…")."""
    parts = hook.split(".")
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1, hook)
