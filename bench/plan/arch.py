"""The architecture a plan is made for: the preset's TransformerLens config and its SAEs' configs,
read offline (the hub's cached configs, else the preset's own ``arch`` table), and the model and
SAEs built from them on PyTorch's ``meta`` device (shapes and dtypes, no storage)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

# TransformerLens block layouts for presets whose TL config needs the hub (keys of HookedTransformerConfig).
FAMILIES: dict[str, dict] = {
    "gpt2": dict(act_fn="gelu_new", normalization_type="LN", positional_embedding_type="standard", eps=1e-5,
                 original_architecture="GPT2LMHeadModel", n_ctx=1024),
    "gemma2": dict(act_fn="gelu_pytorch_tanh", normalization_type="RMS", use_normalization_before_and_after=True,
                   positional_embedding_type="rotary", gated_mlp=True, attn_scores_soft_cap=50.0,
                   output_logits_soft_cap=30.0, use_local_attn=True, window_size=4096, final_rms=True,
                   rotary_base=10000.0, use_attn_scale=True, eps=1e-6, n_ctx=8192,
                   original_architecture="Gemma2ForCausalLM", initializer_range=0.02),
}


ARCH_KEYS = ("n_layers", "d_model", "d_mlp", "n_heads", "n_key_value_heads", "d_head", "d_vocab")


@dataclass
class Arch:
    """What the plan needs: TL config kwargs, the SAEs (hook, SAELens cfg dict), where each came from."""

    name: str
    cfg: dict
    saes: list[tuple[str, dict]]
    source: str
    checks: list[str] = field(default_factory=list)

    @property
    def d_sae(self) -> list[int]:
        return [int(c["d_sae"]) for _, c in self.saes]


def _tl_cfg_fields() -> set[str]:
    from transformer_lens import HookedTransformerConfig

    return {f.name for f in dataclasses.fields(HookedTransformerConfig) if f.init}


@contextlib.contextmanager
def _offline():
    """No network while reading configs: huggingface_hub reads its offline flag at call time from here."""
    import os

    from huggingface_hub import constants

    old_env, old_const = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"], constants.HF_HUB_OFFLINE = "1", True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old_const
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env


def _tl_config_offline(model: str) -> dict | None:
    """TransformerLens's own config for ``model``, if it loads without the hub (Gemma-2's is built in)."""
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config

    try:
        with _offline():
            cfg = get_pretrained_model_config(model)
    except Exception:  # noqa: BLE001 - needs the hub (e.g. gpt2's config.json): use the preset's table
        return None
    keep = _tl_cfg_fields() - {"device", "dtype", "tokenizer_name", "n_params"}
    return {k: v for k, v in cfg.to_dict().items() if k in keep}


def _from_table(arch: dict, preset_name: str) -> dict:
    from bench.errors import UsageError

    fam = arch.get("family")
    if fam not in FAMILIES:
        raise UsageError(f"preset {preset_name!r}: arch.family {fam!r} is not one of {', '.join(FAMILIES)}")
    out = dict(FAMILIES[fam])
    out.update({k: v for k, v in arch.items() if k in _tl_cfg_fields()})
    if fam == "gemma2":
        out["attn_types"] = ["local", "global"] * (out["n_layers"] // 2) + ["local"] * (out["n_layers"] % 2)
        out.setdefault("rotary_dim", out["d_head"])
    return out


def _hook_of_id(sae_id: str) -> str:
    if sae_id.startswith("blocks."):
        return sae_id
    m = re.search(r"layer_(\d+)", sae_id)
    if m:
        return f"blocks.{int(m.group(1))}.hook_resid_post"
    raise ValueError(f"cannot tell the hook of SAE id {sae_id!r}")


def _sae_cfg_offline(release: str, sae_id: str) -> dict | None:
    """SAELens's config for ``release/sae_id`` when its loader derives it without the hub (Gemma Scope)."""
    try:
        from sae_lens.loading.pretrained_sae_loaders import get_conversion_loader_name, load_sae_config_from_huggingface

        if get_conversion_loader_name(release) != "gemma_2":  # the others read cfg.json from the hub
            return None
        with _offline():
            return load_sae_config_from_huggingface(release, sae_id, device="meta")
    except Exception:  # noqa: BLE001
        return None


def resolve_arch(preset, world_dir: str | Path | None = None) -> Arch:
    """The architecture of ``preset`` (name, TOML path or Preset), without weights or the hub."""
    from bench.model.presets import get_preset

    preset = get_preset(preset) if isinstance(preset, str) else preset
    if preset.is_embedded:
        from bench.model.loading import embedded_dir
        from bench.model.world.variants import model_dir_name, sae_dir_name

        root = Path(world_dir) if world_dir else embedded_dir()
        model_dir, sae_root = root / model_dir_name(preset.model), root / sae_dir_name(preset.sae_release)
        cfg = json.loads((model_dir / "config.json").read_text())
        ids = list(preset.sae_ids)
        if ids == ["*"]:
            ids = sorted(p.name for p in sae_root.iterdir() if (p / "cfg.json").is_file())
        saes = []
        for sae_id in ids:
            c = json.loads((sae_root / sae_id / "cfg.json").read_text())
            hook = (c.get("metadata") or {}).get("hook_name") or sae_id
            saes.append((hook, c))
        return Arch(preset.name, cfg, saes, f"world config {model_dir / 'config.json'}")

    table = dict(preset.arch)
    tl = _tl_config_offline(preset.model)
    checks = []
    if tl is not None:
        source = f"TransformerLens config of {preset.model!r} (offline)"
        for k in ARCH_KEYS:
            if k in table and k in tl and table[k] != tl[k]:
                checks.append(f"MISMATCH {k}: presets.toml {table[k]} vs TransformerLens {tl[k]}")
            elif k in table and k in tl:
                checks.append(f"ok {k}={tl[k]}")
        cfg = tl
    else:
        if not table:
            from bench.errors import UsageError

            raise UsageError(f"preset {preset.name!r}: TransformerLens needs the hub for its config and the "
                             f"preset has no [{preset.name}.arch] table")
        source = f"presets.toml [{preset.name}.arch] (TransformerLens's config of {preset.model!r} needs the hub)"
        cfg = _from_table(table, preset.name)
    saes = []
    for sae_id in preset.sae_ids:
        c = _sae_cfg_offline(preset.sae_release, sae_id)
        if c is not None:
            for k, tk in (("d_sae", "d_sae"), ("architecture", "sae_architecture"), ("d_in", "d_model")):
                if tk in table and c.get(k) != table[tk]:
                    checks.append(f"MISMATCH SAE {sae_id} {k}: presets.toml {table[tk]} vs SAELens {c.get(k)}")
            hook = (c.get("metadata") or {}).get("hook_name") or c.get("hook_name")
            checks.append(f"ok SAE {sae_id}: {c.get('architecture')} d_sae={c.get('d_sae')} at {hook} (SAELens, offline)")
        else:
            hook = _hook_of_id(sae_id)
            c = {"architecture": table.get("sae_architecture", "standard"), "d_in": cfg["d_model"],
                 "d_sae": int(table["d_sae"]), "metadata": {"hook_name": hook}}
        saes.append((hook, c))
    return Arch(preset.name, cfg, saes, source, checks)


def _make_sae(c: dict, hook: str, d_in: int, dtype: str, device: str = "meta"):
    from sae_lens import SAE

    c = dict(c)
    c.update(d_in=d_in, dtype=dtype, device=device)
    meta = dict(c.get("metadata") or {})
    meta["hook_name"] = hook
    c["metadata"] = meta
    if c.get("normalize_activations") is None:
        c["normalize_activations"] = "none"
    cfg = SAE.get_sae_config_class_for_architecture(c["architecture"]).from_dict(c)
    return SAE.get_sae_class_for_architecture(cfg.architecture())(cfg)


def build_meta(arch: Arch, dtype: str = "float32", error_policy: str = "drop", device: str = "meta"):
    """The spliced model on the meta device: real modules, no storage (``device="cpu"``: random weights)."""
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from bench.model.spliced import SplicedModel

    kw = {k: v for k, v in arch.cfg.items() if k in _tl_cfg_fields()}
    kw.update(device=device, dtype=getattr(torch, dtype), tokenizer_name=None, seed=0)
    with torch.device(device):
        model = HookedTransformer(HookedTransformerConfig(**kw), move_to_device=False)
        saes = {hook: _make_sae(c, hook, model.cfg.d_model, dtype, device) for hook, c in arch.saes}
    sp = SplicedModel(model, saes, error_policy)
    if error_policy == "mean":
        sp.error_means = {s: torch.zeros(model.cfg.n_ctx, model.cfg.d_model, device=device, dtype=getattr(torch, dtype))
                          for s in sp.sites}
    return sp


def static_bytes(sp) -> dict[str, int]:
    def nbytes(mod) -> int:
        return sum(t.numel() * t.element_size() for t in [*mod.parameters(), *mod.buffers()])

    return {"model": nbytes(sp.model), "saes": sum(nbytes(s) for s in sp.saes.values())}
