"""Integrated gradients' step count, chosen on the train split by IG's completeness axiom
(methods/integrated_gradients.py): the ladder, its stopping rule, its diagnostics, its options."""

from __future__ import annotations

import pytest
import torch

from bench.toys import context_for, multisite_toy
from methods.integrated_gradients import IntegratedGradients


def _endpoint_error(ctx, values: dict[str, torch.Tensor], path: str = "per_sae") -> float:
    """The completeness error recomputed independently: endpoint LDs through ``ctx.masked_metric``
    from tokens (not the method's prefix runs), in float64, one SAE replaced at a time."""
    n = len(ctx.train)
    ones = {s: torch.ones(ctx.train.n_pos, ctx.spliced.d_sae(s)) for s in ctx.sites}
    groups = [[s] for s in ctx.sites] if path == "per_sae" else [list(ctx.sites)]
    with torch.no_grad():
        kept = ctx.masked_metric(ones, ctx.train).double()
        worst = 0.0
        for g in groups:
            replaced = ctx.masked_metric({**ones, **{s: torch.zeros_like(ones[s]) for s in g}}, ctx.train).double()
            target = (kept - replaced).sum().item()
            total = sum(values[s].double().sum().item() for s in g) * n
            worst = max(worst, abs(total - target) / max(abs(target), kept.abs().sum().item()))
    return worst


def test_linear_toy_stops_at_min_steps_exactly_complete(linear):
    # Affine metric: the gradient is constant along the path, so any step count is exact.
    ctx = context_for(linear)
    out = IntegratedGradients().discover(ctx)
    assert out.diagnostics["n_steps"] == 10.0
    assert out.diagnostics["converged"] == 1.0
    assert out.diagnostics["completeness_error"] < 1e-6
    pinned = IntegratedGradients(n_steps=10).discover(ctx)
    assert torch.equal(out.values[linear.site], pinned.values[linear.site])
    assert pinned.diagnostics == {"n_steps": 10.0}  # pinned: no ladder, no endpoint runs


def test_ladder_climbs_until_complete_on_a_nonlinear_toy():
    # Two ReLU SAEs, per-SAE paths through a GELU model: the completeness error falls with the steps
    # (about 5e-3 at 10, 1.3e-3 at 20, 9e-4 at 40): with tol 3e-3 the ladder must stop at 20.
    ctx = context_for(multisite_toy())
    method = IntegratedGradients(tol=3e-3)
    out = method.discover(ctx)
    chosen = int(out.diagnostics["n_steps"])
    assert chosen == 20 and out.diagnostics["converged"] == 1.0
    err = out.diagnostics["completeness_error"]
    assert err == pytest.approx(_endpoint_error(ctx, out.values), abs=1e-5)
    assert err <= 3e-3
    # The rung below did not satisfy the criterion (so the climb was needed), recomputed the same way.
    below = IntegratedGradients(n_steps=10).discover(ctx).values
    assert _endpoint_error(ctx, below) > 3e-3
    # The returned scores are exactly a pinned run's at the chosen count.
    pinned = IntegratedGradients(n_steps=chosen).discover(ctx).values
    assert all(torch.equal(out.values[s], pinned[s]) for s in ctx.sites)


def test_joint_path_completeness_matches_an_independent_recomputation():
    ctx = context_for(multisite_toy())
    out = IntegratedGradients(path="joint", tol=1e-9, max_steps=20).discover(ctx)
    assert out.diagnostics["n_steps"] == 20.0 and out.diagnostics["converged"] == 0.0  # ran out: tol unreachable
    assert out.diagnostics["completeness_error"] == pytest.approx(_endpoint_error(ctx, out.values, "joint"), abs=1e-5)


def test_topk_downstream_never_converges_and_says_so(tiny_world):
    # Per-SAE paths through the tiny world's first TopK SAE pass through the second one, whose top-k
    # set jumps along the path: IG misses the jumps at any step count (~0.2 at 10 and 20 steps).
    from bench.api import MethodContext
    from bench.data import split_train_test, tokenize_records
    from bench.model.ablation import candidates, make_replacement
    from tasks import IndirectObjectIdentification

    sp = tiny_world.spliced
    data = tokenize_records(IndirectObjectIdentification().records(24, 0), tiny_world.tokenizer, "ioi", "1", "ioi")
    train, _ = split_train_test(data, 8, 8, 0)
    repl = make_replacement("mean", sp, train, train)
    ctx = MethodContext(sp, train, repl, candidates(sp.latents(train.clean), repl))
    out = IntegratedGradients(max_steps=20).discover(ctx)
    assert out.diagnostics["n_steps"] == 20.0
    assert out.diagnostics["converged"] == 0.0 and out.diagnostics["completeness_error"] > 0.05


def test_step_ladder():
    assert IntegratedGradients().config.step_ladder() == [10, 20, 40, 80]
    assert IntegratedGradients(n_steps=7).config.step_ladder() == [7]
    assert IntegratedGradients(min_steps=10, max_steps=50).config.step_ladder() == [10, 20, 40, 50]
    assert IntegratedGradients(min_steps=5, max_steps=5).config.step_ladder() == [5]


@pytest.mark.parametrize("opts", [dict(min_steps=40, max_steps=20), dict(tol=0.0), dict(tol=-0.1),
                                  dict(tol=float("nan")), dict(n_steps=-1), dict(min_steps=0)])
def test_bad_options_are_one_line_value_errors(opts):
    with pytest.raises(ValueError) as info:
        IntegratedGradients(**opts)
    assert "\n" not in str(info.value)


def test_quick_runs_pin_the_papers_ten_steps():
    from bench.run.config import RunConfig
    from bench.run.setup import build_method

    assert build_method("integrated_gradients", RunConfig(quick=True)).config.n_steps == 10
    assert build_method("integrated_gradients", RunConfig()).config.n_steps == 0


@pytest.mark.parametrize("errors, want", [
    ([0.405, 0.371, 0.358, 0.350], 20),  # dict_keyerror's measured errors: a doubling buys < 20%: stalls at 20
    ([0.8, 0.5, 0.3, 0.2], 80),  # each doubling cuts > 20%: climbs to max_steps
    ([0.8, 0.5, 0.04, 0.03], 40),  # within tol at 40
])
def test_the_ladder_stops_when_a_doubling_stops_paying(monkeypatch, errors, want):
    ctx = context_for(multisite_toy())
    seen = []
    monkeypatch.setattr(IntegratedGradients, "completeness_error",
                        lambda self, ctx, totals, scale, targets: errors[len(seen) - 1])
    real = IntegratedGradients.attribute

    def attribute(self, ctx, steps):
        seen.append(steps)
        return real(self, ctx, 2)  # the scores do not matter here, only which rungs ran

    monkeypatch.setattr(IntegratedGradients, "attribute", attribute)
    out = IntegratedGradients().discover(ctx)
    assert seen[-1] == want and out.diagnostics["n_steps"] == want
    assert seen == [10, 20, 40, 80][: seen.index(want) + 1]
    assert out.diagnostics["converged"] == float(errors[len(seen) - 1] <= 0.05)
