"""The greedy best-circuit reference against brute force on toys, its pool, its config, the contract.

Every reference value here is recomputed with ``ctx.masked_metric`` and bool masks (one forward per
circuit), never with the method's own stacked evaluation.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from bench.eval.sizes import top_k_circuit
from bench.testing import parametrize_with_checks
from bench.toys import PLANTED, context_for, multisite_toy
from methods.activation_magnitude import ActivationMagnitude
from methods.attribution_patching import AttributionPatching
from methods.integrated_gradients import IntegratedGradients
from methods.greedy import Greedy

Node = tuple[str, int, int]


def _ld(ctx, nodes) -> float:
    """Mean LD on the train prompts with ``nodes`` kept and every other latent replaced."""
    masks = {s: torch.zeros(ctx.train.n_pos, ctx.spliced.d_sae(s), dtype=torch.bool) for s in ctx.sites}
    for s, p, j in nodes:
        masks[s][p, j] = True
    with torch.no_grad():
        return ctx.masked_metric(masks, ctx.train).mean().item()


def _cut(scores, ctx, k) -> frozenset[Node]:
    c = top_k_circuit(scores.values, ctx.candidates, k)
    return frozenset((s, p, j) for s, m in c.masks.items() for p, j in m.nonzero().tolist())


def _pool(scores) -> list[Node]:
    """Pool nodes, last survivor first."""
    nodes = [((s, p, j), float(v[p, j])) for s, v in scores.values.items() for p, j in v.nonzero().tolist()]
    return [n for n, _ in sorted(nodes, key=lambda t: -t[1])]


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-5 * (1 + abs(b))


def _best_removal(ctx, circuit: frozenset[Node]) -> float:
    return max(_ld(ctx, circuit - {n}) for n in circuit)


def test_exact_at_every_size_on_an_additive_objective(linear):
    # The linear toy's LD is affine in the kept latents (one SAE at the last layer, no final norm):
    # LD(C) = LD(empty) + sum of the nodes' effects, so backward elimination keeps the top-k effects
    # and must equal the brute-force best at every k.
    ctx = context_for(linear)
    scores = Greedy(pool=7, exact_below=7).discover(ctx)
    pool = _pool(scores)
    assert len(pool) == 7
    for k in range(1, 8):
        best = max(_ld(ctx, c) for c in itertools.combinations(pool, k))
        assert _close(_ld(ctx, _cut(scores, ctx, k)), best), k


def test_every_exact_step_is_the_best_single_removal_on_a_two_site_toy():
    # Two SAEs, a nonlinear path between them: greedy is not optimal in general, but k = pool - 1 is
    # exact (every single removal is tried) and each step is the best single removal from the step
    # before. The circuits are nested and never beat brute force.
    ctx = context_for(multisite_toy(0))
    scores = Greedy(pool=7, exact_below=7).discover(ctx)
    pool = _pool(scores)
    assert len(pool) == 7
    assert sorted(float(scores.values[s][p, j]) for s, p, j in pool) == [float(i) for i in range(1, 8)]
    cuts = {k: _cut(scores, ctx, k) for k in range(1, 8)}
    assert cuts[7] == frozenset(pool)
    for k in range(1, 7):
        assert cuts[k] < cuts[k + 1]
        assert _close(_ld(ctx, cuts[k]), _best_removal(ctx, cuts[k + 1])), k
        best = max(_ld(ctx, c) for c in itertools.combinations(pool, k))
        assert _ld(ctx, cuts[k]) <= best + 1e-5 * (1 + abs(best)), k
    assert _close(_ld(ctx, cuts[6]), max(_ld(ctx, c) for c in itertools.combinations(pool, 6)))


def test_size_one_on_the_planted_toy_is_the_best_single_node(planted):
    ctx = context_for(planted)
    scores = Greedy(pool=8, exact_below=8).discover(ctx)
    pool = _pool(scores)
    best = max(_ld(ctx, [n]) for n in pool)
    assert _close(_ld(ctx, _cut(scores, ctx, 1)), best)
    assert pool[0] == (planted.site, ctx.train.n_pos - 1, PLANTED)


def test_the_coarse_phase_removes_the_quarter_whose_removal_costs_least():
    # pool 8, exact_below 4: 8 -> 6 (a quarter) -> 5 -> 4 (one at a time, never below exact_below),
    # then exact steps down to 1.
    ctx = context_for(multisite_toy(0))
    scores = Greedy(pool=8, exact_below=4).discover(ctx)
    pool = frozenset(_pool(scores))
    assert len(pool) == 8
    left = sorted(((_ld(ctx, pool - {n}), n) for n in pool), key=lambda t: -t[0])
    assert _cut(scores, ctx, 7) == pool - {left[0][1]}  # inside a round: highest LD left = removed first
    assert _cut(scores, ctx, 6) == pool - {left[0][1], left[1][1]}
    for k in (1, 2, 3):
        assert _close(_ld(ctx, _cut(scores, ctx, k)), _best_removal(ctx, _cut(scores, ctx, k + 1))), k
    assert scores.diagnostics["n_evaluations"] == 3 + 8 + 6 + 5 + 4 + 3 + 2


def test_pool_is_candidates_only_and_capped_by_them():
    ctx = context_for(multisite_toy(0))
    scores = Greedy(pool=20, exact_below=4).discover(ctx)
    for s, v in scores.values.items():
        assert bool(ctx.candidates[s][v > 0].all())  # every pool node is a candidate
    assert sum(int((v > 0).sum()) for v in scores.values.values()) == 20
    assert scores.diagnostics["pool_size"] == 20
    d = scores.diagnostics
    assert _close(d["full_ld_mean"], _ld(ctx, [(s, p, j) for s, m in ctx.candidates.items() for p, j in m.nonzero().tolist()]))
    assert _close(d["empty_ld_mean"], _ld(ctx, []))
    assert _close(d["pool_ld_mean"], _ld(ctx, _pool(scores)))

    # Fewer candidates than the pool: the pool is every candidate.
    few = {s: torch.zeros_like(m) for s, m in ctx.candidates.items()}
    chosen = [(s, p, j) for s, m in ctx.candidates.items() for p, j in m.nonzero().tolist()][::40][:5]
    for s, p, j in chosen:
        few[s][p, j] = True
    ctx.candidates = few
    scores = Greedy(pool=64, exact_below=4).discover(ctx)
    assert set(_pool(scores)) == set(chosen)
    assert scores.diagnostics["pool_size"] == 5
    assert all(bool(((v > 0) == few[s]).all()) for s, v in scores.values.items())  # non-pool nodes score 0

    ctx.candidates = {s: torch.zeros_like(m) for s, m in few.items()}
    scores = Greedy().discover(ctx)
    assert scores.diagnostics["pool_size"] == 0
    assert all(not v.any() for v in scores.values.values())


def test_pool_takes_the_head_of_each_ranking():
    # Five slots, round-robin: the top node of positive IG, positive AtP, |IG|, |AtP| and magnitude
    # are all in (a duplicate only moves the next ranking down its list). References from the
    # methods themselves.
    ctx = context_for(multisite_toy(0))
    ig = IntegratedGradients(n_steps=10, batch_size=16).discover(ctx).values
    atp = AttributionPatching().discover(ctx).values
    mag = ActivationMagnitude().discover(ctx).values

    def top(vals, keep=lambda v: torch.ones_like(v, dtype=torch.bool)) -> Node:
        best = max(((float(vals[s][p, j]), (s, p, j)) for s in ctx.sites
                    for p, j in (ctx.candidates[s] & keep(vals[s])).nonzero().tolist()))
        return best[1]

    want = {top(ig, lambda v: v > 0), top(atp, lambda v: v > 0), top({s: v.abs() for s, v in ig.items()}),
            top({s: v.abs() for s, v in atp.items()}), top(mag)}
    pool = set(_pool(Greedy(pool=5, exact_below=5).discover(ctx)))
    assert want <= pool and len(pool) == 5


@pytest.mark.parametrize("opts, field", [
    ({"pool": 0}, "pool"), ({"n_prompts": -1}, "n_prompts"), ({"batch_size": 1.5}, "batch_size"),
    ({"max_rows": True}, "max_rows"), ({"exact_below": 129}, "exact_below"), ({"pool": 16}, "exact_below"),
])
def test_bad_config_is_a_one_line_value_error(opts, field):
    with pytest.raises(ValueError, match=field) as exc:
        Greedy(**opts)
    assert "\n" not in str(exc.value) and str(exc.value).startswith("greedy:")


def test_registered_as_a_builtin():
    from bench import registry

    assert registry.load("method", "greedy") is Greedy
    assert registry.entries("method")["greedy"].builtin
    Greedy(**Greedy.quick_overrides)  # the quick settings are valid


# A smaller pool than the default keeps the checks quick; the algorithm is the same.
@parametrize_with_checks([Greedy(pool=16, exact_below=8, n_prompts=8)])
def test_greedy_passes_the_contract(method, check):
    check(method)
