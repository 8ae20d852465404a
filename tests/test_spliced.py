"""The SAE-spliced model: error policies, BOS, edits, hook hygiene."""

from __future__ import annotations

import pytest
import torch

from bench.model.spliced import SplicedModel, mask_edit


def _tokens(world, n=6):
    from tasks import IndirectObjectIdentification

    recs = IndirectObjectIdentification().records(n, 0)
    return torch.tensor([world.tokenizer(r["clean_prefix"])["input_ids"] for r in recs])


def test_keep_policy_equals_plain_model(tiny_world):
    # fp32: encode/decode round trips differ from the identity by rounding only (~1e-6).
    toks = _tokens(tiny_world)
    sp = tiny_world.spliced.with_policy("keep")
    assert torch.allclose(sp.run(toks), sp.run_plain(toks), atol=1e-5)


def test_drop_policy_changes_logits_but_not_bos(tiny_world):
    toks = _tokens(tiny_world)
    sp = tiny_world.spliced.with_policy("drop")
    a, b = sp.run(toks), sp.run_plain(toks)
    assert a.shape == (len(toks), 1, sp.model.cfg.d_vocab)  # last position only
    assert not torch.allclose(a, b, atol=1e-3)
    # BOS residual passes through unchanged: read position 0 from TL's full forward.
    with torch.no_grad(), sp.spliced():
        full = sp.model(toks)
    assert torch.equal(full[:, 0], sp.model(toks)[:, 0])
    assert not torch.allclose(full[:, 1:], sp.model(toks)[:, 1:], atol=1e-3)


def test_bos_latents_are_zero(tiny_world):
    lat = tiny_world.spliced.latents(_tokens(tiny_world))
    assert all(bool((v[:, 0] == 0).all()) for v in lat.values())


def test_mean_policy_uses_fitted_errors(tiny_world):
    toks = _tokens(tiny_world)
    sp = tiny_world.spliced.with_policy("mean")
    with pytest.raises(RuntimeError, match="fit_error_means"):
        sp.run(toks)
    sp.fit_error_means(toks)
    assert set(sp.error_means) == set(sp.sites)
    # With the mean taken over the same prompts, the mean policy sits between drop and keep.
    keep, mean, drop = (tiny_world.spliced.with_policy(p) for p in ("keep", "mean", "drop"))
    mean.error_means = sp.error_means
    d_mean = (mean.run(toks) - keep.run(toks)).abs().mean()
    d_drop = (drop.run(toks) - keep.run(toks)).abs().mean()
    assert d_mean < d_drop


def test_keep_every_latent_changes_nothing(tiny_world):
    toks = _tokens(tiny_world)
    sp = tiny_world.spliced
    edits = {s: mask_edit(torch.ones(toks.shape[1], sp.d_sae(s), dtype=torch.bool), torch.randn(toks.shape[1], sp.d_sae(s)))
             for s in sp.sites}
    assert torch.equal(sp.run(toks, edits), sp.run(toks))


def test_mean_ablating_every_latent_gives_the_empty_metric(tiny_world):
    from bench.data import logit_diff, split_train_test, tokenize_records
    from bench.eval.evaluate import Evaluator, SplitData
    from bench.model.ablation import candidates, make_replacement
    from tasks import IndirectObjectIdentification

    data = tokenize_records(IndirectObjectIdentification().records(40, 0), tiny_world.tokenizer, "ioi", "1", "ioi")
    train, test = split_train_test(data, 20, 20, 0)
    sp = tiny_world.spliced
    repl = make_replacement("mean", sp, test, train)
    ev = Evaluator(sp, {"test": SplitData(test, repl)}, candidates(sp.latents(test.clean), repl))
    # Independent reference: overwrite each site's latents with the train corrupted mean.
    means = {s: v.mean(0) for s, v in sp.latents(train.patch).items()}
    with torch.no_grad():
        logits = sp.run(test.clean, {s: (lambda f, m=m: m.expand_as(f).clone()) for s, m in means.items()})
    assert ev.baselines("test")["m_empty"] == pytest.approx(logit_diff(logits, test.clean_answer, test.patch_answer).mean().item(), abs=1e-5)


def test_no_hook_left_after_a_run_that_raises(tiny_world):
    sp = tiny_world.spliced
    toks = _tokens(tiny_world)

    def boom(f):
        raise ValueError("edit failed")

    with pytest.raises(ValueError, match="edit failed"):
        sp.run(toks, {sp.sites[-1]: boom})
    assert sp.hook_count() == 0
    assert torch.equal(sp.run_plain(toks), sp.run_plain(toks))


def test_run_from_site_matches_full_run(tiny_world):
    toks = _tokens(tiny_world)
    sp = tiny_world.spliced
    inputs = sp.site_inputs(toks)
    for site in sp.sites:
        assert torch.allclose(sp.run_from(site, inputs[site]), sp.run(toks), atol=1e-5)


def test_bad_sae_is_rejected(tiny_world):
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    from bench.errors import BenchError

    sae = StandardSAE(StandardSAEConfig(d_in=7, d_sae=8, metadata=SAEMetadata(hook_name="blocks.0.hook_resid_post")))
    with pytest.raises(BenchError, match="d_in=7"):
        SplicedModel(tiny_world.spliced.model, {"blocks.0.hook_resid_post": sae})
    with pytest.raises(BenchError, match="does not exist"):
        SplicedModel(tiny_world.spliced.model, {"blocks.9.hook_resid_post": sae})
    with pytest.raises(BenchError, match="error policy"):
        SplicedModel(tiny_world.spliced.model, {}, error_policy="sometimes")


@pytest.mark.parametrize("policy", ["drop", "keep", "mean"])
def test_final_site_substituted_at_the_last_position_only_changes_nothing(tiny_world, policy, monkeypatch):
    """A run substitutes the final residual's SAE at the last position alone (only the head reads it):
    its logits, and the gradients into a soft mask at every site, equal those of TransformerLens's
    full forward with every site substituted at every position (the reference below)."""
    toks = _tokens(tiny_world, 12)
    toks, other = toks[:6], toks[6:]
    sp = tiny_world.spliced.with_policy(policy)
    if policy == "mean":
        sp.fit_error_means(other)  # other prompts: a wrong position of the means would show
    final = sp.sites[-1]
    assert sp.is_final(final) and not any(sp.is_final(s) for s in sp.sites[:-1])
    decoded = []  # positions the final SAE decodes, per call
    dec = sp.saes[final].decode
    monkeypatch.setattr(sp.saes[final], "decode", lambda f: decoded.append(f.shape[1]) or dec(f))
    g = torch.Generator().manual_seed(0)
    P = toks.shape[1]
    repl = {s: torch.rand(P, sp.d_sae(s), generator=g) for s in sp.sites}
    rows = {s: torch.rand(len(toks), P, sp.d_sae(s), generator=g) for s in sp.sites}  # one per prompt
    for kind in ("none", "bool", "float", "per-row"):
        masks = {s: torch.rand(P, sp.d_sae(s), generator=g) for s in sp.sites}
        if kind in ("bool", "per-row"):
            masks = {s: m > 0.5 for s, m in masks.items()}
        r = rows if kind == "per-row" else repl
        grads, logits_of = {}, {}
        for last in (True, False):
            ms = {s: m.clone().requires_grad_(kind == "float") for s, m in masks.items()}
            edits = {} if kind == "none" else {s: mask_edit(ms[s], r[s]) for s in sp.sites}
            decoded.clear()
            if last:
                logits = sp.run(toks, edits)
                assert decoded and set(decoded) == {1}, decoded  # the final SAE decoded the last position only
            else:  # the reference: every position substituted, the head on TL's full residual
                with sp.spliced(edits):
                    logits = sp._head(sp.model(toks, stop_at_layer=sp.model.cfg.n_layers))
                assert decoded[-1] == P
            if kind == "float":
                logits[..., :5].sum().backward()
                grads[last] = {s: ms[s].grad for s in sp.sites}
            logits_of[last] = logits.detach()
        # The same arithmetic on fewer rows: fp32 matmuls of another shape round differently in the
        # last bits (~1e-7 here), and the reference also runs the prefix in the same forward (as
        # test_run_from_site_matches_full_run, 1e-5); the breaks tried (the mean error of position 0,
        # no error term under keep, the unedited latents decoded) fail it.
        assert torch.allclose(logits_of[True], logits_of[False], atol=1e-5, rtol=0), (policy, kind)
        if kind == "float":
            for s in sp.sites:
                assert torch.allclose(grads[True][s], grads[False][s], atol=1e-5, rtol=0), (policy, s)
            assert bool(grads[True][final][:-1].eq(0).all()) and bool(grads[True][final][-1].ne(0).any())
    # run_from the final site itself, with its latents given (as a cached prefix passes them)
    x = sp.site_inputs(toks)[final]
    f = sp.encode(final, x)
    edit = {final: mask_edit(masks[final], repl[final])}
    with sp.spliced(edit):
        ref = sp._head(sp.model(toks, stop_at_layer=sp.model.cfg.n_layers))
    assert torch.allclose(sp.run_from(final, x, dict(edit), latents=f), ref, atol=1e-5, rtol=0)
    full = sp.substitute(final, x)
    assert torch.allclose(sp.substitute(final, x, last_only=True), full[:, -1:], atol=1e-6, rtol=0)
    cap, cap_ref = {}, {}
    assert sp.substitute(final, x, capture=cap, last_only=True).shape == x.shape  # capture: every position
    sp.substitute(final, x, capture=cap_ref)
    assert torch.equal(cap[final], cap_ref[final])
