"""The real-model presets' architectures, offline, on tiny random models of the same shape.

Gemma-2 (the paper's model): RMSNorm before and after each sublayer, attention and logit soft-caps,
grouped-query attention, alternating local/global attention, JumpReLU SAEs at resid_post (Gemma
Scope). GPT-2: LayerNorm, learned positions, SAEs at resid_pre (the gpt2-small preset).
The spliced model must equal the plain model under the `keep` policy, ``run_from`` must equal a full
run at resid_pre and resid_post sites, the logits must be TL's last position, and every built-in
method must run.
"""

from __future__ import annotations

import pytest
import torch

from bench.data import TaskData
from bench.model.spliced import SplicedModel


def _gemma2_like(attn_types=("global", "local")):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=4, d_model=32, n_heads=4, d_head=8, n_key_value_heads=2, d_mlp=64, d_vocab=50, n_ctx=32,
        act_fn="gelu_pytorch_tanh", normalization_type="RMSPre", use_normalization_before_and_after=True,
        positional_embedding_type="rotary", rotary_dim=8, gated_mlp=True, attn_scores_soft_cap=50.0,
        output_logits_soft_cap=30.0, use_local_attn=True, attn_types=list(attn_types) * 2, window_size=4,
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


# Settings that keep the slow methods to a few steps; the others run with their quick overrides.
FAST = {"integrated_gradients": {"n_steps": 3}, "binary_mask": {"lambdas": (0.01,), "steps": 5},
        "edge_mask": {"steps": 3, "n_lambdas": 2, "restarts": 1, "batch_size": 4, "judge_prompts": 4}}


def _toy_data(n=8, pos=12):
    g = torch.Generator().manual_seed(0)
    toks = torch.randint(1, 50, (n, pos), generator=g)
    toks[:, 0] = 0
    patch = toks.clone()
    patch[:, 5] = (patch[:, 5] + 7) % 50
    patch[:, -1] = (patch[:, -1] + 3) % 50
    return TaskData("toy", "1", toks, patch, torch.full((n,), 3), torch.full((n,), 4), ["x"] * n, "train")


def _context(sp, data, ablation="mean"):
    from bench.api import MethodContext
    from bench.model.ablation import candidates, make_replacement

    repl = make_replacement(ablation, sp, data, data)
    return MethodContext(sp, data, repl, candidates(sp.latents(data.clean), repl))


@pytest.mark.parametrize("build", [_gemma2_like, _gpt2_like], ids=["gemma-2", "gpt2"])
def test_preset_architectures_splice_and_run_methods(build):
    from bench import registry

    model, hooks, kind = build()
    sp = SplicedModel(model, _saes(hooks, kind), "keep")
    data = _toy_data()
    # keep policy: the spliced model is the plain model up to fp32 rounding
    assert torch.allclose(sp.run(data.clean), sp.run_plain(data.clean), atol=1e-4)
    ctx = _context(sp.with_policy("drop"), data)
    names = [n for n, e in registry.entries("method").items() if e.builtin]
    assert "activation_patching" in names
    assert {"edge_mask", "edge_attribution_patching"} <= set(names)
    for name in names:
        cls = registry.load("method", name)
        method = cls(**FAST.get(name, cls.quick_overrides))
        out = method.discover(_edge_context(ctx) if cls.unit == "edges" else ctx)
        if cls.unit == "edges":  # scores finite; a mask's circuits inside the universe's candidate edges
            values = [*out.values, out.to_metric] if hasattr(out, "values") else []
            for c in getattr(out, "circuits", []):
                assert c.n_edges() <= _edge_context(ctx).edge_candidates.n_edges(), name
        else:
            values = out.values.values() if hasattr(out, "values") else [m.float() for m in out.circuits[0].masks.values()]
        assert all(torch.isfinite(v).all() for v in values), name
    assert sp.hook_count() == 0


def _edge_context(ctx):
    """``ctx`` with an edge universe: per site, the 3 candidate nodes of largest mean |f - r|."""
    from bench.api import EdgeCircuit, EdgeMethodContext

    lat = ctx.spliced.latents(ctx.train.clean)
    masks = {}
    for s, c in ctx.candidates.items():
        move = ((lat[s] - ctx.replacement.values[s]).abs().mean(0) * c).flatten()
        m = torch.zeros(c.numel(), dtype=torch.bool)
        m[move.topk(3).indices.cpu()] = True
        masks[s] = m.view(c.shape) & c.cpu()
    return EdgeMethodContext(ctx.spliced, ctx.train, ctx.replacement, ctx.candidates,
                             edge_candidates=EdgeCircuit.from_masks(masks, ctx.sites))


def _edit_scale(f):
    return 0.5 * f + 0.3


def _edit_flip(f):
    return f.flip(-1)


def _hooked(sp, toks, edits):
    """Independent reference: TL's own full forward with the SAE hooks installed (``run`` and
    ``run_from`` both start mid-model; this one runs every block from the tokens)."""
    with torch.no_grad(), sp.spliced(edits):
        return sp.model(toks)[:, -1:]


# Tolerance: run_from and run do the same fp32 operations on the same inputs (on CPU they agree
# bit for bit); 1e-5 allows for kernels that block a batch differently. Starting one block off,
# or dropping a downstream SAE or edit, moves logits by O(0.1-1) here (the edit effect is checked).
@pytest.mark.parametrize("policy", ["drop", "keep"])
@pytest.mark.parametrize("build", [_gemma2_like, _gpt2_like], ids=["gemma-2", "gpt2"])
def test_run_from_equals_full_run_with_edits(build, policy):
    model, hooks, kind = build()
    sp = SplicedModel(model, _saes(hooks, kind), policy)
    toks = _toy_data().clean
    inputs = sp.site_inputs(toks)
    plain = _hooked(sp, toks, {})
    for i, site in enumerate(sp.sites):
        for edits in ({}, {site: _edit_scale}, {site: _edit_scale, **{s: _edit_flip for s in sp.sites[i + 1 : i + 2]}}):
            full = _hooked(sp, toks, edits)
            if edits:
                assert (full - plain).abs().max() > 1e-2  # the edit is not a no-op
            assert torch.allclose(sp.run_from(site, inputs[site], edits), full, atol=1e-5), (site, list(edits))
            assert torch.allclose(sp.run(toks, edits), full, atol=1e-5), (site, list(edits))


def test_activation_patching_equals_brute_force_on_gpt2_resid_pre():
    """Each score is LD(clean) - LD(node replaced), recomputed here with full ``run`` calls."""
    from bench.data import logit_diff
    from methods.activation_patching import ActivationPatching

    model, hooks, kind = _gpt2_like()
    sp = SplicedModel(model, _saes(hooks, kind), "drop")
    data = _toy_data()
    ctx = _context(sp, data)
    n = 4
    scores = ActivationPatching(max_prompts=n, forward_batch=37).discover(ctx).values
    sub = data.subset(list(range(n)))
    base = logit_diff(sp.run(sub.clean), sub.clean_answer, sub.patch_answer)
    g = torch.Generator().manual_seed(1)
    checked = 0
    for site in sp.sites:
        nodes = ctx.candidates[site].nonzero()
        assert (scores[site][~ctx.candidates[site]] == 0).all()
        for k in torch.randperm(len(nodes), generator=g)[:3].tolist():
            pos, lat = nodes[k].tolist()
            value = ctx.replacement.values[site][pos, lat]

            def ablate(f, pos=pos, lat=lat, value=value):
                f = f.clone()
                f[:, pos, lat] = value
                return f

            ld = logit_diff(sp.run(sub.clean, {site: ablate}), sub.clean_answer, sub.patch_answer)
            expected = (base - ld).mean()
            assert scores[site][pos, lat].item() == pytest.approx(expected.item(), abs=1e-5), (site, pos, lat)
            checked += abs(expected.item()) > 1e-4
    assert checked >= 3  # some of the checked nodes have a real effect


def _capped(model, cap):
    model.cfg.output_logits_soft_cap = cap
    return model


# Tolerance: the head is TL's own ln_final/unembed/soft-cap on a slice of the residual, so only the
# matmul blocking can differ (fp32, logits of order 1-30): 1e-5 absolute.
@pytest.mark.parametrize("build", [_gemma2_like, _gpt2_like], ids=["gemma-2", "gpt2"])
def test_logits_are_the_last_position_of_the_tl_forward(build):
    model, hooks, kind = build()
    sp = SplicedModel(model, _saes(hooks, kind), "drop")
    toks = _toy_data().clean
    edits = {sp.sites[0]: _edit_scale}
    inputs = sp.site_inputs(toks)
    caps = [None] if model.cfg.output_logits_soft_cap <= 0 else [model.cfg.output_logits_soft_cap, 1.0]
    for cap in caps:
        if cap is not None:
            _capped(model, cap)
        full = model(toks)
        with sp.spliced(edits):
            spliced_full = model(toks)
        got_plain, got_run = sp.run_plain(toks), sp.run(toks, edits)
        got_from = sp.run_from(sp.sites[0], inputs[sp.sites[0]], edits)
        assert got_plain.shape == got_run.shape == got_from.shape == (len(toks), 1, model.cfg.d_vocab)
        assert torch.allclose(got_plain, full[:, -1:], atol=1e-5)
        assert torch.allclose(got_run, spliced_full[:, -1:], atol=1e-5)
        assert torch.allclose(got_from, spliced_full[:, -1:], atol=1e-5)
        if cap == 1.0:  # the cap binds: without it the logits would differ
            assert got_plain.abs().max() <= 1.0
            _capped(model, -1.0)
            assert (model(toks)[:, -1:] - got_plain).abs().max() > 0.1


def test_logits_last_position_on_the_embedded_world(embedded_world):
    from tasks import IndirectObjectIdentification

    sp = embedded_world.spliced
    recs = IndirectObjectIdentification().records(6, 0)
    toks = torch.tensor([embedded_world.tokenizer(r["clean_prefix"])["input_ids"] for r in recs])
    with torch.no_grad():
        full = sp.model(toks)
        with sp.spliced():
            spliced_full = sp.model(toks)
        assert torch.allclose(sp.run_plain(toks), full[:, -1:], atol=1e-5)
        assert torch.allclose(sp.run(toks), spliced_full[:, -1:], atol=1e-5)


def test_listing_is_lazy():
    import subprocess
    import sys

    code = ("from bench import registry; registry.entries('method'); registry.entries('task'); import sys; "
            "print(sorted(m for m in ('torch', 'methods.binary_mask', 'transformer_lens') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _last_block_positions(sp, call):
    """``call()``'s result and the positions the last block's MLP computed (per forward): observed by
    wrapping the MLP's forward, since a hook inside the block would make the whole block run."""
    seen = []
    mlp = sp.model.blocks[sp.model.cfg.n_layers - 1].mlp
    forward = mlp.forward
    mlp.forward = lambda x, *a, **k: seen.append(x.shape[1]) or forward(x, *a, **k)
    try:
        return call(), seen
    finally:
        del mlp.forward


def _grads(sp, toks, site, run):
    """Logits and the gradient into a per-latent scale at ``site`` (as a float mask's)."""
    w = torch.full((sp.d_sae(site),), 0.7, requires_grad=True)
    logits = run({site: lambda f: f * w})
    logits[..., :5].sum().backward()
    return logits.detach(), w.grad


def _gemma2_global_last():  # Gemma-2-9B's block 41 (after its last SAE) is a global one
    return _gemma2_like(attn_types=("local", "global"))


# Tolerance 1e-5, as above: the short last block does the same fp32 operations on fewer rows (its
# matmuls round differently in the last bits, ~1e-6 here). Breaks tried, each failing here or in
# tests/test_spliced.py: the earlier positions' keys and values computed without ln1, the final
# site's mean error taken at position 0, the final site's hook not told the prompts' length, a site
# inside the last block ignored.
@pytest.mark.parametrize("build,layers", [(_gemma2_like, (0, 1, 3)), (_gemma2_like, (0, 1, 2)),
                                          (_gemma2_global_last, (0, 1, 2)), (_gpt2_like, None)],
                         ids=["gemma-2-final-site", "gemma-2-free-local-last-block", "gemma-2-free-global-last-block",
                              "gpt2-resid-pre"])
@pytest.mark.parametrize("policy", ["drop", "keep", "mean"])
def test_last_block_runs_at_the_last_position_alone(build, layers, policy):
    """The last block computes the last position only (its keys and values from every position),
    where no site sits inside it; its logits and gradients equal TransformerLens's full forward."""
    model, hooks, kind = build()
    if layers is not None:
        hooks = [f"blocks.{i}.hook_resid_post" for i in layers]
    sp = SplicedModel(model, _saes(hooks, kind), policy)
    toks = _toy_data().clean
    if policy == "mean":  # fitted on other prompts: a mean taken at the wrong position would show
        other = torch.randint(1, 50, (8, toks.shape[1]), generator=torch.Generator().manual_seed(5))
        other[:, 0] = 0
        sp.fit_error_means(other)
    P, last = toks.shape[1], model.cfg.n_layers - 1
    pre = f"blocks.{last}.hook_resid_pre"
    inputs = sp.site_inputs(toks)
    for site in sp.sites:
        inside = site != pre and pre in sp.sites  # a site inside the last block downstream: the whole block runs
        edits = {site: _edit_scale}
        got, seen = _last_block_positions(sp, lambda site=site, edits=edits: sp.run_from(site, inputs[site], dict(edits)))
        assert torch.allclose(got, _hooked(sp, toks, edits), atol=1e-5), site
        if site != f"blocks.{last}.hook_resid_post":
            assert seen == [P if inside else 1], (site, seen)
        g_short = _grads(sp, toks, site, lambda e, site=site: sp.run_from(site, inputs[site], e))

        def full(e):  # the reference for the gradients: TL's forward, every block at every position
            with sp.spliced(e):
                return sp.model(toks)[:, -1:]

        g_full = _grads(sp, toks, site, full)
        assert torch.allclose(g_short[0], g_full[0], atol=1e-5), site
        assert torch.allclose(g_short[1], g_full[1], atol=1e-5), site
        assert g_full[1].abs().max() > 1e-3, site  # the gradient is not trivially zero
    got, seen = _last_block_positions(sp, lambda: sp.run(toks))
    assert torch.allclose(got, _hooked(sp, toks, {}), atol=1e-5) and seen == [P if layers is None else 1]
    # a hook someone else attached inside the last block sees every position: the whole block runs
    name = f"blocks.{last}.attn.hook_z"
    with model.hooks(fwd_hooks=[(name, lambda z, hook: z)]):
        got, seen = _last_block_positions(sp, lambda: sp.run(toks, {sp.sites[0]: _edit_scale}))
    assert seen == [P] and torch.allclose(got, _hooked(sp, toks, {sp.sites[0]: _edit_scale}), atol=1e-5)


def test_the_last_block_runs_whole_where_its_architecture_needs_it():
    from bench.model.last_block import unsupported

    model, hooks, kind = _gemma2_like()
    assert unsupported(model.cfg) is None
    assert unsupported(_gpt2_like()[0].cfg) is None
    cfg = model.cfg
    for field, value, reason in [("positional_embedding_type", "shortformer", "shortformer"),
                                 ("positional_embedding_type", "alibi", "alibi"),
                                 ("original_architecture", "Olmo2ForCausalLM", "Olmo2"),
                                 ("original_architecture", "Olmo3ForCausalLM", "Olmo3"),
                                 ("original_architecture", "OlmoeForCausalLM", "Olmoe"),
                                 ("clip_qkv", 8.0, "clip_qkv"), ("n_devices", 2, "2 devices"),
                                 ("use_split_qkv_input", True, "per-head"), ("use_attn_in", True, "per-head"),
                                 ("attention_dir", "bidirectional", "bidirectional")]:
        before = getattr(cfg, field)
        setattr(cfg, field, value)
        try:
            assert reason in (unsupported(cfg) or ""), field
        finally:
            setattr(cfg, field, before)
    # per-head attention inputs (on the GPT-2 weights): the block runs whole and still equals TL's forward
    model, hooks, kind = _gpt2_like()
    model.cfg.use_split_qkv_input = True
    sp = SplicedModel(model, _saes([f"blocks.{i}.hook_resid_post" for i in (0, 1)], kind), "drop")
    toks = _toy_data().clean
    got, seen = _last_block_positions(sp, lambda: sp.run(toks, {sp.sites[0]: _edit_scale}))
    assert seen == [toks.shape[1]] and torch.allclose(got, _hooked(sp, toks, {sp.sites[0]: _edit_scale}), atol=1e-5)
