"""Each method against an independent reference on toys with known answers."""

from __future__ import annotations

import pytest
import torch

from bench.toys import PLANTED, context_for
from methods.activation_patching import ActivationPatching
from methods.attribution_patching import AttributionPatching
from methods.binary_mask import BinaryMask
from methods.integrated_gradients import IntegratedGradients


def test_attribution_patching_equals_exact_patching_on_linear_toy(linear):
    # The metric is affine in the latents, so the first-order estimate is exact up to fp32
    # rounding of a few hundred multiply-adds (1e-5 absolute on effects of order 1).
    ctx = context_for(linear)
    ap = AttributionPatching().discover(ctx).values[linear.site]
    exact = ActivationPatching(max_prompts=len(ctx.train)).discover(ctx).values[linear.site]
    cand = ctx.candidates[linear.site]
    assert cand.sum() > 20
    assert torch.allclose(ap[cand], exact[cand], atol=1e-5)


def test_ig_completeness_error_shrinks_with_steps(tiny_world):
    # IG sums to LD(all kept) - LD(all ablated) in the limit of many steps, provided the path is
    # continuous. With TopK SAEs downstream of the path the metric jumps when a latent enters or
    # leaves the top k, so we splice only the last SAE here (everything after it is smooth).
    from bench.api import MethodContext
    from bench.data import split_train_test, tokenize_records
    from bench.model.ablation import candidates, make_replacement
    from bench.model.spliced import SplicedModel
    from tasks import IndirectObjectIdentification

    last = tiny_world.spliced.sites[-1]
    sp = SplicedModel(tiny_world.spliced.model, {last: tiny_world.spliced.saes[last]}, "drop")
    data = tokenize_records(IndirectObjectIdentification().records(24, 0), tiny_world.tokenizer, "ioi", "1", "ioi")
    train, _ = split_train_test(data, 8, 8, 0)
    repl = make_replacement("mean", sp, train, train)
    ctx = MethodContext(sp, train, repl, candidates(sp.latents(train.clean), repl))
    with torch.no_grad():
        full = ctx.metric(sp.run(train.clean), train).mean().item()
        empty = ctx.masked_metric({last: torch.zeros(train.n_pos, sp.d_sae(last))}, train).mean().item()
    errors = []
    for steps in (2, 8, 64):
        scores = IntegratedGradients(n_steps=steps, rule="riemann_right").discover(ctx).values
        errors.append(abs(scores[last].sum().item() - (full - empty)))
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 0.02 * abs(full - empty) + 1e-5


def test_ig_equals_attribution_and_exact_patching_on_linear_toy(linear):
    # On an affine metric the gradient is constant along the path: IG = AP = exact effect.
    ctx = context_for(linear)
    cand = ctx.candidates[linear.site]
    ig = IntegratedGradients(n_steps=3).discover(ctx).values[linear.site]
    exact = ActivationPatching(max_prompts=len(ctx.train)).discover(ctx).values[linear.site]
    assert torch.allclose(ig[cand], exact[cand], atol=1e-5)


@pytest.mark.parametrize("method", [AttributionPatching(), IntegratedGradients(), IntegratedGradients(path="joint"), ActivationPatching()],
                         ids=["attribution_patching", "ig_per_sae", "ig_joint", "activation_patching"])
def test_every_ranking_method_finds_the_planted_latent(planted, method):
    ctx = context_for(planted)
    scores = method.discover(ctx).values[planted.site]
    last = ctx.train.n_pos - 1
    flat = scores.abs().flatten().argmax().item()
    assert divmod(flat, scores.shape[1]) == (last, PLANTED)


def test_binary_mask_keeps_the_planted_latent(planted):
    ctx = context_for(planted)
    circuits = BinaryMask(lambdas=(0.05, 0.2), steps=40).discover(ctx).circuits
    last = ctx.train.n_pos - 1
    for c in circuits:
        assert bool(c.masks[planted.site][last, PLANTED])
    smallest = min(circuits, key=lambda c: c.n_nodes(ctx.candidates))
    assert smallest.n_nodes(ctx.candidates) <= 3


def test_binary_mask_with_lambda_near_zero_stays_faithful(embedded_world):
    from bench.api import MethodContext
    from bench.data import split_train_test, tokenize_records
    from bench.eval.evaluate import Evaluator, SplitData
    from bench.eval.sizes import restrict, union
    from bench.model.ablation import candidates, make_replacement
    from tasks import SubjectVerbAgreement

    sp = embedded_world.spliced
    data = tokenize_records(SubjectVerbAgreement().records(64, 0), embedded_world.tokenizer, "sva", "1", "sva")
    train, test = split_train_test(data, 32, 32, 0)
    repl = make_replacement("mean", sp, train, train)
    ctx = MethodContext(sp, train, repl, candidates(sp.latents(train.clean), repl))
    repl_test = make_replacement("mean", sp, test, train)
    universe = union(ctx.candidates, candidates(sp.latents(test.clean), repl_test))
    ev = Evaluator(sp, {"test": SplitData(test, repl_test)}, universe)
    (circuit,) = BinaryMask(lambdas=(1e-7,), steps=20).discover(ctx).circuits
    kept = restrict(circuit, universe)
    assert ev.faithfulness(float(ev.lds([kept.masks], "test").mean()), "test")["faithfulness_sae_norm"] >= 0.95


def test_binary_mask_temperature_schedule_and_grid():
    cfg = BinaryMask.Config(lambda_max=0.1, n_lambdas=4, spacing="quadratic")
    assert cfg.grid() == pytest.approx([0.1 / 16, 0.1 / 4, 0.1 * 9 / 16, 0.1])
    assert BinaryMask.Config(lambda_min=0.01, lambda_max=1.0, n_lambdas=3).grid() == pytest.approx([0.01, 0.1, 1.0])
    assert 200 ** (1.1 * 0 / 60) == 1.0
