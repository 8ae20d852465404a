"""The model's last block at the last position only, through TransformerLens's own key-value cache.

Every metric reads the last position's logits. Inside the last block the earlier positions are read
only as keys and values of its attention: their queries, attention outputs, MLP and residual are
never read. So the block can run at the last position alone once it has the keys and values of the
positions before it, which is exactly how TransformerLens generates text: ``TransformerBlock.forward``
on the new position with a ``TransformerLensKeyValueCacheEntry`` of the past keys and values. It
offsets the rotary angles, the causal (and sliding-window) mask and the log-n scaling of the query by
the cache's length itself. This module computes the past keys and values with the block's own
``ln1`` and ``attn.calculate_qkv_matrices`` (as the cached forward did for those positions) and hands
them to the block in a frozen entry. On the embedded world (6 blocks, runs resume after layer 1)
the last block is a quarter of the blocks every evaluation, mask and IG forward runs (measured:
0.85-0.94 of the time, docs/speed.md); on Gemma-2-9B, block 41 after the last SAE at layer 40.

Why not a hand-written attention: the block's own code keeps every architecture detail (pre- and
post-norms, soft-caps, grouped-query heads, local windows, gated MLPs) in one place. What the
cached path would get wrong is refused by :func:`unsupported` (then the whole block runs):
TransformerLens 3.9 applies OLMo's q/k norms and ``clip_qkv`` in ``forward`` between computing the
keys and appending them to the cache, post-norm blocks feed the attention un-normalised inputs,
``use_attn_in``/``use_split_qkv_input`` inputs have a head axis, shortformer and relative
positions add per-position terms outside the attention, a non-causal block reads later keys, and a
model split over devices moves the residual between blocks in ``HookedTransformer.forward``. ALiBi is
refused too, though TransformerLens's cache path offsets it: nothing here tests it. And a hook
that someone else put inside the last block (:func:`busy_hooks`) would see one position: the whole
block runs then.
``tests/test_architectures.py`` and ``tests/test_spliced.py`` compare the logits and gradients with
TransformerLens's full forward.
"""

from __future__ import annotations

import torch

# Architectures whose attention forward normalises or clips q/k after calculate_qkv_matrices
# (TransformerLens 3.9, AbstractAttention.forward), so cached keys computed here would miss it.
_QK_IN_FORWARD = ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM")


def unsupported(cfg) -> str | None:
    """Why the last block cannot run at the last position alone under ``cfg`` (None: it can)."""
    from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

    if cfg.positional_embedding_type not in ("standard", "rotary"):
        return f"positional embedding {cfg.positional_embedding_type!r}"
    if cfg.use_attn_in or cfg.use_split_qkv_input:
        return "per-head attention inputs"
    if cfg.original_architecture in POST_NORM_ARCHITECTURES or cfg.original_architecture in _QK_IN_FORWARD:
        return f"architecture {cfg.original_architecture}"
    if getattr(cfg, "clip_qkv", None) is not None:
        return "clip_qkv"
    if cfg.attention_dir != "causal":
        return f"attention {cfg.attention_dir!r}"
    if getattr(cfg, "n_devices", 1) > 1:
        return f"a model split over {cfg.n_devices} devices"
    return None


def busy_hooks(block) -> list[str]:
    """The hook points inside ``block`` that have hooks attached before a run installs its own (a
    plugin's, a user's): they would see the last position only, so the whole block runs."""
    from transformer_lens.hook_points import HookPoint

    return [m.name for m in block.modules() if isinstance(m, HookPoint)
            and (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks)]


def last_position(block, resid_pre: torch.Tensor) -> torch.Tensor:
    """``block(resid_pre)[:, -1:]`` without computing the other positions' outputs: ``[batch, 1, d_model]``.

    The hooks inside the block see the last position only (the caller installs none there but a
    site at the block's ``hook_resid_post``, which then substitutes one position)."""
    from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry

    if resid_pre.shape[1] == 1:
        return block(resid_pre)
    past = block.ln1(resid_pre[:, :-1])
    # The keys and values of the earlier positions, as the full forward computes them (the query of
    # one position comes along, unused: calculate_qkv_matrices projects all three).
    _, keys, values = block.attn.calculate_qkv_matrices(past[:, :1], past, past)
    cache = TransformerLensKeyValueCacheEntry(keys, values, frozen=True)
    return block(resid_pre[:, -1:], past_kv_cache_entry=cache)
