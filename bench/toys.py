"""Toy models with hand-computable behaviour, for the numerical tests and the public contract.

``linear_toy``: one SAE at the last layer, no final norm, error dropped: the logits are an affine
function of the latents, so attribution patching must equal exact patching.

``planted_toy``: attention switched off (W_O = 0) and orthonormal token embeddings, so the
residual after layer 0 is the token's embedding; latent ``PLANTED`` fires only on the clean
prompts' last token and its decoder direction *is* the logit difference. Every method must rank
``(site, last position, PLANTED)`` first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PLANTED = 3
VOCAB = 12
D_MODEL = 16


@dataclass
class Toy:
    spliced: object
    data: object  # TaskData (train)
    test: object
    site: str


def _model(n_layers: int, seed: int):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=n_layers, d_model=D_MODEL, n_heads=2, d_head=8, d_mlp=32, d_vocab=VOCAB, n_ctx=16,
        act_fn="gelu", normalization_type=None, positional_embedding_type="rotary", seed=seed,
    )
    return HookedTransformer(cfg).eval()


def _sae(hook: str, d_sae: int, seed: int):
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(seed)
    sae = StandardSAE(StandardSAEConfig(d_in=D_MODEL, d_sae=d_sae, metadata=SAEMetadata(hook_name=hook)))
    with torch.no_grad():
        sae.b_enc.normal_(0.0, 0.3)
    return sae


def _data(clean_last: int, patch_last: int, n: int, seed: int, a: int = 1, b: int = 2):
    from bench.data import TaskData

    g = torch.Generator().manual_seed(seed)
    body = torch.randint(4, VOCAB, (n, 5), generator=g)
    clean = torch.cat([torch.zeros(n, 1, dtype=torch.long), body, torch.full((n, 1), clean_last)], 1)
    patch = torch.cat([torch.zeros(n, 1, dtype=torch.long), body, torch.full((n, 1), patch_last)], 1)
    return TaskData("toy", "1", clean, patch, torch.full((n,), a), torch.full((n,), b), ["toy"] * n)


def linear_toy(seed: int = 0):
    from bench.model.spliced import SplicedModel

    model = _model(2, seed)
    site = "blocks.1.hook_resid_post"
    spliced = SplicedModel(model, {site: _sae(site, 24, seed)}, "drop")
    return Toy(spliced, _data(5, 6, 12, seed), _data(5, 6, 12, seed + 1), site)


def planted_toy(seed: int = 0):
    from bench.model.spliced import SplicedModel

    model = _model(1, seed)
    site = "blocks.0.hook_resid_post"
    with torch.no_grad():
        for p in (model.blocks[0].attn.W_O, model.blocks[0].attn.b_O, model.blocks[0].mlp.W_out, model.blocks[0].mlp.b_out):
            p.zero_()
        q, _ = torch.linalg.qr(torch.randn(D_MODEL, D_MODEL, generator=torch.Generator().manual_seed(seed)))
        model.embed.W_E.copy_(q[:VOCAB])  # orthonormal token embeddings
    sae = _sae(site, 24, seed)
    a, b, clean_tok, patch_tok = 1, 2, 5, 6
    with torch.no_grad():
        sae.W_enc.mul_(0.05)
        sae.W_dec.mul_(0.05)
        sae.b_enc.fill_(-0.01)
        sae.b_dec.zero_()
        sae.W_enc[:, PLANTED] = 4.0 * model.embed.W_E[clean_tok]
        direction = model.unembed.W_U[:, a] - model.unembed.W_U[:, b]
        sae.W_dec[PLANTED] = 3.0 * direction / direction.norm()
    spliced = SplicedModel(model, {site: sae}, "drop")
    return Toy(spliced, _data(clean_tok, patch_tok, 12, seed, a, b), _data(clean_tok, patch_tok, 12, seed + 1, a, b), site)


def multisite_toy(seed: int = 0):
    """Two SAEs (after layers 0 and 2 of a 3-layer model): multi-site bugs (an edit applied at the
    wrong site, a downstream SAE skipped, a per-site shape mix-up) show up here and not on the
    single-site toys."""
    from bench.model.spliced import SplicedModel

    model = _model(3, seed)
    sites = ["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"]
    spliced = SplicedModel(model, {s: _sae(s, 24, seed + i) for i, s in enumerate(sites)}, "drop")
    return Toy(spliced, _data(5, 6, 12, seed), _data(5, 6, 12, seed + 1), sites[-1])


def context_for(toy: Toy, ablation: str = "mean"):
    """The MethodContext the harness would build for a toy."""
    from bench.api import MethodContext
    from bench.model.ablation import candidates, make_replacement

    repl = make_replacement(ablation, toy.spliced, toy.data, toy.data)
    cands = candidates(toy.spliced.latents(toy.data.clean), repl)
    return MethodContext(toy.spliced, toy.data, repl, cands, seed=0)
