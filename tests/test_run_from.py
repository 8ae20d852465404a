"""run_from start blocks, forward order of mixed resid_pre/resid_post sites, and weighted pass counts."""

from __future__ import annotations

import pytest
import torch

from bench.errors import InputError
from bench.model.spliced import SplicedModel, start_block
from tests.test_architectures import _context, _edit_flip, _edit_scale, _gpt2_like, _hooked, _saes, _toy_data

# Given in scrambled order; forward order is 0.pre, 1.post, 2.pre (same residual as 1.post), 2.post, 3.pre.
MIXED = ["blocks.2.hook_resid_post", "blocks.3.hook_resid_pre", "blocks.2.hook_resid_pre",
         "blocks.1.hook_resid_post", "blocks.0.hook_resid_pre"]
FORWARD = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_post", "blocks.2.hook_resid_pre",
           "blocks.2.hook_resid_post", "blocks.3.hook_resid_pre"]


def _mixed(policy="drop"):
    model, _, kind = _gpt2_like()
    return SplicedModel(model, _saes(MIXED, kind), policy)


def test_start_block_from_the_hook_name():
    assert start_block("blocks.3.hook_resid_pre") == 3
    assert start_block("blocks.3.hook_resid_post") == 4
    for bad in ("blocks.3.hook_mlp_out", "blocks.3.attn.hook_z", "hook_embed", "blocks.x.hook_resid_pre"):
        with pytest.raises(InputError) as e:
            start_block(bad)
        assert bad in str(e.value) and "\n" not in str(e.value)


def test_mixed_sites_sort_in_forward_order():
    sp = _mixed()
    assert sp.sites == FORWARD
    # The order TL actually fires the hooks in.
    fired = []
    with sp.model.hooks(fwd_hooks=[(s, lambda x, hook: fired.append(hook.name)) for s in MIXED]):
        sp.model(_toy_data().clean, stop_at_layer=sp.model.cfg.n_layers)
    assert fired == FORWARD


# Tolerance as in test_architectures: identical fp32 operations, 1e-5 for kernel blocking.
def test_run_from_equals_full_run_with_mixed_sites():
    sp = _mixed()
    toks = _toy_data().clean
    inputs = sp.site_inputs(toks)
    plain = _hooked(sp, toks, {})
    for i, site in enumerate(sp.sites):
        edits = {site: _edit_scale, **{s: _edit_flip for s in sp.sites[i + 1 :]}}
        full = _hooked(sp, toks, edits)
        assert (full - plain).abs().max() > 1e-2
        assert torch.allclose(sp.run_from(site, inputs[site], edits), full, atol=1e-5), site


def test_run_from_rejects_upstream_edits_and_other_hooks():
    sp = _mixed()
    x = sp.site_inputs(_toy_data().clean)["blocks.2.hook_resid_pre"]
    with pytest.raises(ValueError, match="upstream"):
        sp.run_from("blocks.2.hook_resid_pre", x, {"blocks.1.hook_resid_post": _edit_scale})
    model, _, kind = _gpt2_like()
    odd = SplicedModel(model, _saes(["blocks.1.hook_mlp_out"], kind))
    with pytest.raises(InputError, match="blocks.1.hook_mlp_out"):
        odd.run_from("blocks.1.hook_mlp_out", x)


def test_mean_errors_are_fitted_under_every_upstream_site():
    # Independent check: under the fitted means, each site's input on a mean-policy run must have
    # exactly the fitted mean error. A site fitted without an upstream SAE at the same layer fails.
    sp = _mixed("mean")
    toks = _toy_data().clean
    sp.fit_error_means(toks)
    inputs = sp.site_inputs(toks)
    for site, sae in sp.saes.items():
        x = inputs[site]
        err = (x - sae.decode(sae.encode(x))).mean(0)
        assert torch.allclose(err, sp.error_means[site], atol=1e-5), site


def test_pass_counter_weights_partial_runs_by_hand():
    sp = _mixed()  # 4 layers
    toks = _toy_data().clean  # 8 prompts
    inputs = sp.site_inputs(toks)
    c = sp.counter
    before = c.snapshot()
    sp.run(toks)  # 8 full
    sp.run_plain(toks[:3])  # 3 full
    sp.run_from("blocks.2.hook_resid_pre", inputs["blocks.2.hook_resid_pre"])  # blocks 2,3: 8 * 2/4 = 4
    sp.run_from("blocks.1.hook_resid_post", inputs["blocks.1.hook_resid_post"][:4])  # blocks 2,3: 4 * 2/4 = 2
    sp.run_from("blocks.0.hook_resid_pre", inputs["blocks.0.hook_resid_pre"][:2])  # all: 2
    x = inputs["blocks.3.hook_resid_pre"][:6].clone().requires_grad_()
    sp.run_from("blocks.3.hook_resid_pre", x).sum().backward()  # block 3: 6 * 1/4 = 1.5, fwd and bwd
    mask = torch.ones(toks.shape[1], sp.d_sae(FORWARD[0]), requires_grad=True)
    from bench.model.spliced import mask_edit

    sp.run(toks[:5], {FORWARD[0]: mask_edit(mask, torch.zeros_like(mask))}).sum().backward()  # 5 full, fwd and bwd
    d = c.since(before)
    assert d["forward_calls"] == 7 and d["backward_calls"] == 2
    assert d["forward_prompts"] == 8 + 3 + 8 + 4 + 2 + 6 + 5
    assert d["backward_prompts"] == 6 + 5
    assert d["forward_model_fraction"] == pytest.approx(8 + 3 + 4 + 2 + 2 + 1.5 + 5)
    assert d["backward_model_fraction"] == pytest.approx(1.5 + 5)


def test_activation_patching_pass_count_by_hand():
    from methods.activation_patching import ActivationPatching

    sp = _mixed()
    data = _toy_data()
    ctx = _context(sp, data)
    n = 3
    before = sp.counter.snapshot()
    ActivationPatching(max_prompts=n, forward_batch=64).discover(ctx)
    d = sp.counter.since(before)
    nodes = {s: int(ctx.candidates[s].sum()) for s in sp.sites}
    start = {"blocks.0.hook_resid_pre": 0, "blocks.1.hook_resid_post": 2, "blocks.2.hook_resid_pre": 2,
             "blocks.2.hook_resid_post": 3, "blocks.3.hook_resid_pre": 3}
    assert d["forward_prompts"] == n + n * sum(nodes.values())
    assert d["forward_model_fraction"] == pytest.approx(n + sum(n * k * (4 - start[s]) / 4 for s, k in nodes.items()))
    assert d["backward_prompts"] == 0


@pytest.mark.parametrize("policy", ["drop", "keep", "mean"])
def test_a_prefix_run_equals_the_hooked_full_run_and_counts_its_share(policy):
    # The prefix (blocks below the first site) is computed once and tiled, as the evaluator does;
    # the result must equal TL's full hooked forward on the tiled tokens (tolerance as above), and
    # prefix + rest must count as exactly one full pass per prompt.
    sp = _mixed(policy)  # first site blocks.0.hook_resid_pre: the prefix is the embedding only
    if policy == "mean":
        sp.fit_error_means(_toy_data().clean)
    for first in (FORWARD[0], FORWARD[1]):
        sub = sp.with_sites(FORWARD[FORWARD.index(first):])
        assert sub.sites[0] == first
        toks = _toy_data().clean
        edits = {s: _edit_flip for s in sub.sites[1:2]} | {first: _edit_scale}
        before = sub.counter.snapshot()
        pre = sub.prefix(toks)
        got = sub.run(pre.repeat(3), edits)
        d = sub.counter.since(before)
        want = _hooked(sub, toks.repeat(3, 1), edits)
        assert (want - _hooked(sub, toks.repeat(3, 1), {})).abs().max() > 1e-2  # the edits are not no-ops
        assert torch.allclose(got, want, atol=1e-5), first
        # With the first site's latents cached too (the evaluator's path), on a subset of rows.
        idx = torch.tensor([5, 0, 5, 2])
        got_lat = sub.run(sub.prefix(toks, count=False, latents=True).index(idx), edits)
        assert torch.allclose(got_lat, _hooked(sub, toks[idx], edits), atol=1e-5), first
        start = start_block(first)
        assert d["forward_calls"] == 2 and d["forward_prompts"] == 8 + 24
        assert d["forward_model_fraction"] == pytest.approx(8 * start / 4 + 24 * (4 - start) / 4)


def test_mean_policy_without_fitted_means_refuses_a_prefix_run():
    # One site: no downstream site's hook would notice the missing means, only run_from's own check.
    sp = _mixed("mean").with_sites([FORWARD[1]])
    toks = _toy_data().clean
    with pytest.raises(RuntimeError, match="fit_error_means"):
        sp.run(sp.prefix(toks))


def test_each_method_pays_for_its_own_train_prefix():
    # One MethodContext serves every method of a task and seed; the cached train prefix must not
    # make the second method's counted cost smaller than the first's (harness.discover resets it).
    from bench.run.cell import discover
    from methods.integrated_gradients import IntegratedGradients

    sp = _mixed().with_sites(FORWARD[1:])  # first site after block 1: the prefix runs 2 of 4 blocks
    ctx = _context(sp, _toy_data())
    costs = [discover(IntegratedGradients(n_steps=2), ctx)[1].as_metrics()["forward_prompts"] for _ in range(2)]
    assert costs[0] == costs[1]
