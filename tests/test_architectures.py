"""The real-model presets' architectures, offline, on tiny random models of the same shape.

Gemma-2 (the paper's model): RMSNorm before and after each sublayer, attention and logit soft-caps,
grouped-query attention, alternating local/global attention, JumpReLU SAEs at resid_post (Gemma
Scope). GPT-2: LayerNorm, learned positions, SAEs at resid_pre (the gpt2-small preset).
The spliced model must equal the plain model under the `keep` policy, and the methods must run.
"""

from __future__ import annotations

import pytest
import torch

from bench.data import TaskData
from bench.spliced import SplicedModel


def _gemma2_like():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=4, d_model=32, n_heads=4, d_head=8, n_key_value_heads=2, d_mlp=64, d_vocab=50, n_ctx=32,
        act_fn="gelu_pytorch_tanh", normalization_type="RMSPre", use_normalization_before_and_after=True,
        positional_embedding_type="rotary", rotary_dim=8, gated_mlp=True, attn_scores_soft_cap=50.0,
        output_logits_soft_cap=30.0, use_local_attn=True, attn_types=["global", "local"] * 2, window_size=4,
        original_architecture="Gemma2ForCausalLM", seed=0,
    )
    return HookedTransformer(cfg).eval(), [f"blocks.{i}.hook_resid_post" for i in (0, 1, 3)], "jumprelu"


def _gpt2_like():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=4, d_model=32, n_heads=4, d_head=8, d_mlp=128, d_vocab=50, n_ctx=32, act_fn="gelu_new",
        normalization_type="LN", positional_embedding_type="standard", original_architecture="GPT2LMHeadModel", seed=0,
    )
    return HookedTransformer(cfg).eval(), [f"blocks.{i}.hook_resid_pre" for i in (1, 2, 3)], "standard"


def _saes(hooks, kind):
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(0)
    out = {}
    for h in hooks:
        meta = SAEMetadata(hook_name=h)
        if kind == "jumprelu":
            sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=32, d_sae=64, metadata=meta))
            with torch.no_grad():
                sae.threshold.fill_(0.05)
        else:
            sae = StandardSAE(StandardSAEConfig(d_in=32, d_sae=64, metadata=meta))
        out[h] = sae
    return out


@pytest.mark.parametrize("build", [_gemma2_like, _gpt2_like], ids=["gemma-2", "gpt2"])
def test_preset_architectures_splice_and_run_methods(build):
    from bench.ablation import candidates, make_replacement
    from methods.attribution_patching import AttributionPatching
    from bench.api import MethodContext
    from methods.binary_mask import BinaryMask
    from methods.integrated_gradients import IntegratedGradients

    model, hooks, kind = build()
    sp = SplicedModel(model, _saes(hooks, kind), "keep")
    g = torch.Generator().manual_seed(0)
    toks = torch.randint(1, 50, (8, 12), generator=g)
    toks[:, 0] = 0
    # keep policy: the spliced model is the plain model up to fp32 rounding
    assert torch.allclose(sp.run(toks), sp.run_plain(toks), atol=1e-4)
    patch = toks.clone()
    patch[:, 5] = (patch[:, 5] + 7) % 50
    data = TaskData("toy", "1", toks, patch, torch.full((8,), 3), torch.full((8,), 4), ["x"] * 8, "train")
    drop = sp.with_policy("drop")
    repl = make_replacement("mean", drop, data, data)
    ctx = MethodContext(drop, data, repl, candidates(drop.latents(data.clean), repl))
    for method in (AttributionPatching(), IntegratedGradients(n_steps=3), BinaryMask(lambdas=(0.01,), steps=5)):
        out = method.discover(ctx)
        values = out.values.values() if hasattr(out, "values") else [m.float() for m in out.circuits[0].masks.values()]
        assert all(torch.isfinite(v).all() for v in values)
    assert sp.hook_count() == 0


def test_listing_is_lazy():
    import subprocess
    import sys

    code = ("from bench import registry; registry.entries('method'); registry.entries('task'); import sys; "
            "print(sorted(m for m in ('torch', 'methods.binary_mask', 'transformer_lens') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
