"""The learned mask's lambda sweep: batched = sequential, chunking, per-lambda seeds, traces, the
adaptive grid."""

from __future__ import annotations

import math

import pytest
import torch

from bench.api import MethodContext
from methods.binary_mask import BinaryMask, Judge, batch_schedule, lambda_seed, log_steps

# Sizes from ~120-380 nodes down to 0-19 on the tiny world (512 candidates): the circuits differ.
LAMBDAS = (1e-4, 1e-3, 1e-2, 0.1)
# Tolerance on the final mask logits between the two sweeps. The only difference is the order of
# fp32 sums (one forward over L*B rows instead of L forwards over B rows; a gradient reduced over
# the same B rows in another order): relative gradient errors of ~1e-6. Adam's update is
# scale-free, so each step's update moves by about that relative amount times lr = 1; over <= 14
# steps the drift stays far below 1e-4 (the tiny world gives bit-identical logits on CPU). The
# smallest |logit| seen there is ~1e-3, so circuits are compared exactly.
ATOL = 1e-4


@pytest.fixture(scope="module")
def tiny_ioi(tiny_world):
    from bench.data import split_train_test, tokenize_records
    from tasks import IndirectObjectIdentification

    data = tokenize_records(IndirectObjectIdentification().records(48, 0), tiny_world.tokenizer, "ioi", "1", "ioi")
    train, _ = split_train_test(data, 24, 8, 0)
    return tiny_world.spliced, train


def _ctx(tiny_ioi, ablation: str = "mean") -> MethodContext:
    from bench.model.ablation import candidates, make_replacement

    sp, train = tiny_ioi
    repl = make_replacement(ablation, sp, train, train)
    return MethodContext(sp, train, repl, candidates(sp.latents(train.clean), repl), seed=0)


def _same_circuits(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x.masks[s], y.masks[s]) for x, y in zip(a, b) for s in x.masks)


CASES = [("mean", g, lo) for g in ("position", "latent") for lo in ("batch_mean", "per_prompt")]
CASES += [("counterfactual", "position", "batch_mean"), ("counterfactual", "latent", "per_prompt")]


@pytest.mark.parametrize("ablation,granularity,loss", CASES, ids=["-".join(c) for c in CASES])
def test_batched_sweep_equals_sequential(tiny_ioi, ablation, granularity, loss):
    ctx = _ctx(tiny_ioi, ablation)
    kw = dict(lambdas=LAMBDAS, steps=12, batch_size=8, granularity=granularity, loss=loss)
    seq = BinaryMask(sweep="sequential", **kw).discover(ctx).circuits
    bat = BinaryMask(sweep="batched", **kw).discover(ctx).circuits
    sizes = [c.n_nodes(ctx.candidates) for c in seq]
    assert len(set(sizes)) >= 3, f"the lambdas should give different circuits, got sizes {sizes}"
    assert _same_circuits(seq, bat), f"sizes: sequential {sizes}, batched {[c.n_nodes(ctx.candidates) for c in bat]}"
    for x, y in zip(seq, bat):
        assert x.params == y.params
        for s in ctx.sites:
            assert torch.allclose(x.scores[s], y.scores[s], atol=ATOL, rtol=0)
        assert x.trace["n_nodes"] == y.trace["n_nodes"]
        assert x.trace["task_loss"] == pytest.approx(y.trace["task_loss"], abs=1e-4)


def test_chunked_sweep_gives_the_same_circuits(tiny_ioi):
    ctx = _ctx(tiny_ioi)
    kw = dict(lambdas=(*LAMBDAS, 0.03), steps=12, batch_size=8)
    whole = BinaryMask(max_rows=0, **kw).discover(ctx).circuits
    chunked = BinaryMask(max_rows=16, **kw).discover(ctx).circuits  # chunks of 2, 2, 1 lambdas
    assert _same_circuits(whole, chunked)
    for x, y in zip(whole, chunked):
        for s in ctx.sites:
            assert torch.allclose(x.scores[s], y.scores[s], atol=ATOL, rtol=0)


def test_a_lambdas_circuit_does_not_depend_on_the_grid(tiny_ioi):
    ctx = _ctx(tiny_ioi)
    a = BinaryMask(lambdas=(1e-3, 1e-2), steps=12, batch_size=8).discover(ctx).circuits
    b = BinaryMask(lambdas=(0.1, 1e-2, 3e-4, 1e-3), steps=12, batch_size=8).discover(ctx).circuits
    assert _same_circuits([a[0], a[1]], [b[3], b[1]])
    assert lambda_seed(0, 1e-3) == lambda_seed(0, 0.001) != lambda_seed(1, 1e-3)
    assert lambda_seed(0, 1) == lambda_seed(0, 1.0)


def test_trace_and_scores(tiny_ioi):
    ctx = _ctx(tiny_ioi)
    steps, n_log = 12, 4
    (c,) = BinaryMask(lambdas=(1e-2,), steps=steps, batch_size=8, n_log=n_log).discover(ctx).circuits
    total = round(1.1 * steps)
    tr = c.trace
    assert tr["step"] == [float(t) for t in log_steps(total, n_log)] and tr["step"][-1] == total
    assert set(tr) == {"step", "temperature", "task_loss", "sparsity", "n_nodes", "task_loss_binarised", "n_changed"}
    assert all(len(v) == len(tr["step"]) for v in tr.values())
    assert tr["n_nodes"][0] == sum(int(m.sum()) for m in ctx.candidates.values())  # every node starts on
    assert tr["n_nodes"][-1] == c.n_nodes(ctx.candidates)
    assert tr["n_changed"][0] == 0 and all(ch >= abs(a - b) for ch, a, b in zip(tr["n_changed"][1:], tr["n_nodes"], tr["n_nodes"][1:]))
    assert tr["temperature"][0] == 1.0
    for s in ctx.sites:
        sc = c.scores[s]
        assert sc.dtype == torch.float32 and sc.device.type == "cpu" and not sc.requires_grad
        assert sc.shape == (ctx.train.n_pos, ctx.spliced.d_sae(s))
        assert torch.equal(sc > 0, c.masks[s])
    # The last point's binarised task loss is the circuit's |LD_ref - LD| on the last step's batch.
    g = torch.Generator().manual_seed(lambda_seed(ctx.seed, 1e-2))
    idx = batch_schedule(g, len(ctx.train), 8, total)[-1]
    batch = ctx.train.subset(idx)
    with torch.no_grad():
        ref = ctx.metric(ctx.spliced.run(batch.clean), batch)
        repl = ctx.replacement.index(idx)
        from bench.model.spliced import mask_edit

        ld = ctx.metric(ctx.spliced.run(batch.clean, {s: mask_edit(c.masks[s], repl[s]) for s in ctx.sites}), batch)
    assert tr["task_loss_binarised"][-1] == pytest.approx(abs(ref.mean() - ld.mean()).item(), abs=1e-4)
    # The sparsity term at step 0: every soft mask is sigmoid(1), summed per SAE, averaged over SAEs.
    per_sae = [ctx.train.n_pos * ctx.spliced.d_sae(s) for s in ctx.sites]
    assert tr["sparsity"][0] == pytest.approx(torch.sigmoid(torch.tensor(1.0)).item() * sum(per_sae) / len(per_sae), rel=1e-5)


def test_adaptive_grid_is_placed_by_size(monkeypatch, tiny_ioi):
    """A stubbed probe with a known size curve: the grid's ends, its size spacing, its inversion of the curve."""
    ctx = _ctx(tiny_ioi)
    calls = []

    def size(lam):  # 2000 nodes at 1e-6, falling by sqrt(10) per decade, empty above 4
        return 0 if lam > 4 else max(1, round(2 * lam ** -0.5))

    def fake_probe(self, ctx, lambdas, ld_ref):
        calls.append(list(lambdas))
        return {lam: size(lam) for lam in lambdas}

    monkeypatch.setattr(BinaryMask, "probe", fake_probe)
    m = BinaryMask(n_lambdas=5)
    grid, predicted = m.adaptive_grid(ctx, torch.zeros(len(ctx.train)))
    assert calls[0] == [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0]
    assert calls[1] == pytest.approx([1.778, 3.162, 5.623])  # refine between 1 (2 nodes) and 10 (empty)
    # Non-empty up to 3.162 (1 node); the grid's top is the second-largest non-empty lambda, 1.778.
    assert grid[-1] == 1.778 and grid[0] == 1e-6
    assert len(grid) == 5 and grid == sorted(grid)
    sizes = [predicted[lam] for lam in grid]
    ratios = [a / b for a, b in zip(sizes, sizes[1:])]
    assert ratios == pytest.approx([ratios[0]] * 4, rel=1e-2)  # log-spaced in size
    # The interpolation inverts the curve: each lambda's true size is near its target.
    for lam in grid:
        assert math.isclose(size(lam), predicted[lam], rel_tol=0.1, abs_tol=1)


def test_adaptive_grid_extends_upwards_and_repairs_empty_circuits(monkeypatch, tiny_ioi):
    ctx = _ctx(tiny_ioi)
    monkeypatch.setattr(BinaryMask, "probe", lambda self, ctx, lambdas, ld_ref: {lam: 0 if lam > 5e4 else 5 for lam in lambdas})
    grid, _ = BinaryMask(n_lambdas=3, spacing="quadratic").adaptive_grid(ctx, torch.zeros(len(ctx.train)))
    # The ladder (up to 1e2) is extended to 1e5 (empty), refined to 3.162e4 (last non-empty), top = 1.778e4.
    assert grid == pytest.approx([1.778e4 / 9, 1.778e4 * 4 / 9, 1.778e4], rel=1e-3)

    # A circuit that comes out empty is retrained a quarter decade lower until it is not.
    def fake_sweep(self, ctx, lambdas, ld_ref, **kw):
        return [({s: torch.full((ctx.train.n_pos, ctx.spliced.d_sae(s)), 1.0 if lam < 300 else -1.0) for s in ctx.sites}, {})
                for lam in lambdas]

    monkeypatch.setattr(BinaryMask, "sweep", fake_sweep)
    m = BinaryMask(restarts=1)
    judge = Judge(ctx, torch.zeros(len(ctx.train)), 8)
    first, _ = m.fit(ctx, [1e3, 1e-3], None, judge, steps=5)
    grid, results = m.repair_empty(ctx, [1e3, 1e-3], first, None, judge)
    assert grid == [1e-3, 177.8]  # 1e3 -> 562.3 -> 316.2 (still empty) -> 177.8; sorted by lambda
    assert all(m.n_nodes(ctx, f.logits) > 0 for f in results)
    # the repaired circuit says so: trained once at its predecessor's schedule, no ladder of its own
    assert results[1].params["steps_state"] == "repaired" and results[1].params["steps_tried"] == [5]
    assert results[1].params["repaired_from"] == 316.2 and results[0].params["steps_state"] == "pinned"


def test_default_sweep_has_no_empty_circuit(tiny_ioi):
    ctx = _ctx(tiny_ioi)
    out = BinaryMask(n_lambdas=6, steps=12, batch_size=8).discover(ctx).circuits
    sizes = [c.n_nodes(ctx.candidates) for c in out]
    assert min(sizes) >= 1 and max(sizes) >= 20 * min(sizes), sizes
    lams = [c.params["lambda"] for c in out]
    assert lams == sorted(lams) and len(set(lams)) == len(lams)


# The public contract (determinism under a seed, the planted latent, no side effects) on the default
# path: the adaptive probe, the batched sweep and the repair (tests/test_contract.py runs a fixed range).
from bench.testing import parametrize_with_checks  # noqa: E402


@parametrize_with_checks([BinaryMask(n_lambdas=3, steps=12, probe_steps=4)])
def test_default_binary_mask_passes_the_contract(method, check):
    check(method)


def test_restarts_keep_the_mask_with_the_lowest_train_objective(tiny_ioi):
    """Each lambda keeps the restart whose objective on the judge's train prompts is lowest, and
    that objective is the training loss at infinite temperature, recomputed here independently."""
    ctx = _ctx(tiny_ioi)
    m = BinaryMask(lambdas=(1e-3, 1e-2, 1e-1), steps=12, batch_size=8, restarts=3, judge_prompts=16, n_log=0)
    out = m.discover(ctx).circuits
    with torch.no_grad():
        ld_ref = torch.cat([ctx.metric(ctx.spliced.run(b.clean), b) for _, b in ctx.train.batches(64)])[:16]
    data = ctx.train.subset(list(range(16)))
    for c in out:
        p = c.params
        objs = p["objective_restarts"]
        assert len(objs) == 3 and p["restart"] == min(range(3), key=lambda r: (objs[r], r))
        assert p["lr"] == m.config.restart_lr(p["restart"]) and p["steps"] == 12 and p["steps_state"] == "pinned"
        ld = float(ctx.masked_metric({s: c.masks[s].float() for s in ctx.sites}, data).mean())
        per_sae = sum(int(c.scores[s].gt(0).sum()) for s in ctx.sites) / len(ctx.sites)
        assert p["objective_train"] == pytest.approx(abs(float(ld_ref.mean()) - ld) + p["lambda"] * per_sae, abs=1e-4)
    # the restarts differ: learning rates alternate, restarts 0 and 2 (same lr) differ in noise and
    # batch order, so within a lambda the restarts' objectives are not all equal
    assert [m.config.restart_lr(r) for r in range(3)] == [1.0, 0.1, 1.0]
    assert all(len(set(c.params["objective_restarts"])) > 1 for c in out)


def test_the_step_ladder_stops_when_two_schedules_agree(tiny_ioi, monkeypatch):
    ctx = _ctx(tiny_ioi)
    m = BinaryMask(lambdas=(1e-2,), min_steps=4, max_steps=32, restarts=1, batch_size=8, n_log=0)
    assert m.config.step_ladder() == [4, 8, 16, 32]
    sizes = {4: 40, 8: 20, 16: 19, 32: 19}  # 8 -> 16 agrees (within 2 nodes, same F): stop at 16
    calls = []

    def fake_best(self, ctx, lambdas, ld_ref, judge, steps):
        from methods.binary_mask import Fitted
        calls.append(steps)
        return [Fitted({}, {}, {"nodes_judge": sizes[steps], "F_judge": 0.9, "steps": steps}) for _ in lambdas]

    monkeypatch.setattr(BinaryMask, "best_restarts", fake_best)
    fitted, steps = m.fit(ctx, [1e-2], None, None)
    assert calls == [4, 8, 16] and steps == 16
    assert fitted[0].params["steps_tried"] == [4, 8, 16] and fitted[0].params["steps_state"] == "converged"
    sizes.update({16: 10, 32: 5})  # never agrees: runs to max_steps and says so
    calls.clear()
    fitted, steps = m.fit(ctx, [1e-2], None, None)
    assert calls == [4, 8, 16, 32] and steps == 32 and fitted[0].params["steps_state"] == "max_steps"


def test_each_lambda_leaves_the_ladder_when_its_own_circuits_agree(tiny_ioi, monkeypatch):
    """Convergence is judged per lambda: a lambda whose circuit agrees with its previous schedule's
    stops there (its circuit kept), and only the others train at the next schedule."""
    ctx = _ctx(tiny_ioi)
    m = BinaryMask(min_steps=4, max_steps=16, restarts=1, n_log=0)
    sizes = {0.1: {4: 10, 8: 10, 16: 10}, 1.0: {4: 50, 8: 20, 16: 19}, 10.0: {4: 90, 8: 60, 16: 30}}
    calls = []

    def fake_best(self, ctx, lambdas, ld_ref, judge, steps):
        from methods.binary_mask import Fitted
        calls.append((steps, list(lambdas)))
        return [Fitted({}, {}, {"nodes_judge": sizes[lam][steps], "F_judge": 0.9, "steps": steps}) for lam in lambdas]

    monkeypatch.setattr(BinaryMask, "best_restarts", fake_best)
    fitted, steps = m.fit(ctx, [0.1, 1.0, 10.0], None, None)
    assert calls == [(4, [0.1, 1.0, 10.0]), (8, [0.1, 1.0, 10.0]), (16, [1.0, 10.0])]
    assert [f.params["steps"] for f in fitted] == [8, 16, 16] and steps == 16
    assert [f.params["steps_tried"] for f in fitted] == [[4, 8], [4, 8, 16], [4, 8, 16]]
    assert [f.params["steps_state"] for f in fitted] == ["converged", "converged", "max_steps"]


def test_the_settings_table_counts_each_lambdas_schedule():
    """The report's settings table counts the mask's schedule per circuit (every lambda of every
    seed), since the ladder converges per lambda: two seeds with 3 lambdas each, mixed schedules."""
    import json

    import pandas as pd

    from bench.eval.tables import chosen_settings

    rows = []
    for seed, steps in ((0, (60, 120, 120)), (1, (60, 60, 120))):
        for i, S in enumerate(steps):
            p = {"lambda": 10.0 ** -i, "steps": S, "steps_state": "converged" if S == 60 else "max_steps", "lr": 1.0}
            rows.append({"status": "ok", "task": "t", "method": "binary_mask", "seed": seed, "circuit": i,
                         "circuit_kind": "native", "metric": "size_nodes", "value": 5.0 + i,
                         "circuit_params": json.dumps(p), "text": ""})
    st = chosen_settings(pd.DataFrame(rows)).iloc[0]
    assert st["steps"] == "120 ×3, 60 ×3" or st["steps"] == "60 ×3, 120 ×3"
    assert set(st["steps_state"].split(", ")) == {"converged ×3", "max_steps ×3"}
