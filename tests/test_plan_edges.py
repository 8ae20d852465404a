"""``bench plan`` for the edge methods (bench.plan.edges): the meta simulation equals real tensors, the
planned FLOPs of a whole edge-mask run equal PyTorch's own count of that run, and a method the plan
does not model is one clear line, not a silently shorter table."""

from __future__ import annotations

import pytest


def _arch():
    from bench.plan.arch import FAMILIES, Arch

    return Arch("t", dict(FAMILIES["gemma2"], n_layers=4, d_model=32, d_mlp=48, n_heads=4, n_key_value_heads=2,
                          d_head=8, d_vocab=97, n_ctx=16, attn_types=["local", "global", "local", "global"],
                          rotary_dim=8),
                [("blocks.0.hook_resid_post", {"architecture": "jumprelu", "d_sae": 64}),
                 ("blocks.1.hook_resid_post", {"architecture": "jumprelu", "d_sae": 64}),
                 ("blocks.3.hook_resid_post", {"architecture": "jumprelu", "d_sae": 64})], "test")


def _settings(**kw):
    from bench.plan.estimate import Settings

    return Settings.defaults(n_train=8, n_test=8, seq_len=6, edge_max_nodes=9, **kw)


def test_assumed_universe_splits_the_cap_over_the_sites_at_distinct_positions():
    import torch

    from bench.plan.arch import build_meta
    from bench.plan.edges import universe

    sp = build_meta(_arch(), "float32", "drop")
    u = universe(sp, 10, 6)
    assert [len(u.nodes[s]) for s in u.sites] == [4, 3, 3]
    for s in u.sites:  # positions 5, 4, 3, ... (never BOS), one latent each
        assert u.nodes[s][:, 0].tolist() == [5, 4, 3, 2][: len(u.nodes[s])]
        assert len(set(u.nodes[s][:, 1].tolist())) == len(u.nodes[s])
    # every allowed edge is a candidate: upstream position <= downstream position
    for (a, b), e in zip(zip(u.sites, u.sites[1:]), u.edges):
        want = u.nodes[a][:, 0].view(-1, 1) <= u.nodes[b][:, 0].view(1, -1)
        assert torch.equal(e, want)
    assert bool(u.to_metric.all())


def test_edge_simulation_on_meta_equals_real_tensors():
    """The tracker counts the same bytes and FLOPs on meta (the plan) as on real CPU tensors for both
    edge methods (the mask's training with every lambda in one forward and in chunks, and its judging
    forward) and the exact edge evaluator, as the node methods' test does."""
    import dataclasses

    import torch

    from bench.plan.arch import build_meta
    from bench.plan.edges import edge_context, edge_evaluator_fn
    from bench.plan.estimate import method_instance
    from bench.plan.simulate import simulate

    st = _settings()
    got = {}
    for device in ("meta", "cpu"):
        torch.manual_seed(0)
        sp = build_meta(_arch(), "float32", "drop", device=device)
        ctx = edge_context(sp, st, 8)
        atp = method_instance("edge_attribution_patching", {"batch_size": 8})
        got[device, "atp"] = simulate(sp, lambda a=atp, c=ctx: a.discover(c), device=device)
        ld = torch.zeros(8, device=sp.device)
        for chunk in (0, 2):  # every lambda in one forward; two, then one
            mask = method_instance("edge_mask", {"steps": 2, "n_lambdas": 3, "batch_size": 4, "lambda_chunk": chunk})
            got[device, f"mask{chunk}"] = simulate(sp, lambda m=mask, c=ctx, y=ld: m.train(c, [1e-3] * 3, y, 0),
                                                   device=device)
        # the restarts' judging: binarised edges for 2 lambdas, no gradient (EdgeMask.objectives' forward)
        cand = ctx.edge_candidates
        binar = [torch.ones((2, *e.shape), device=sp.device) for e in [*cand.edges, cand.to_metric]]
        got[device, "judge"] = simulate(sp, lambda m=mask, c=ctx, b=binar: m._ld(c, b, torch.arange(8)), device=device)
        fn, _, _ = edge_evaluator_fn(sp, dataclasses.replace(st, max_rows=16))
        got[device, "eval"] = simulate(sp, fn, device=device)
    for what in ("atp", "mask0", "mask2", "judge", "eval"):
        m, c = got["meta", what], got["cpu", what]
        assert m.flops == c.flops > 0, what
        # On the CPU the tracker also sees the small index and weight tensors the plan keeps off-device
        # (and vice versa for the mask's logits, which live on the model's device): a few KiB.
        assert abs(m.peak - c.peak) <= max(8192, 0.02 * c.peak), (what, m.peak, c.peak)


@pytest.mark.parametrize("chunk", [0, 2])
def test_planned_edge_mask_flops_equal_pytorchs_count_of_a_whole_run(chunk):
    """The plan simulates two steps and scales; a whole ``discover`` on real CPU tensors (LD_ref of every
    train prompt, every step of every restart, the restarts' judging) counted by ``FlopCounterMode``
    gives the same number. The count cannot pass by construction: drop the judging term from the plan's
    formula and it is short by exactly that forward."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench.plan.arch import build_meta
    from bench.plan.edges import edge_context
    from bench.plan.estimate import method_instance, plan_method

    opts = {"steps": 5, "n_lambdas": 3, "batch_size": 4, "restarts": 2, "judge_prompts": 8, "lambda_chunk": chunk}
    st = _settings(method_options={"edge_mask": opts}, methods=("edge_mask",))
    planned = plan_method(build_meta(_arch(), "float32", "drop"), st, "edge_mask", None).flops
    torch.manual_seed(0)
    sp = build_meta(_arch(), "float32", "drop", device="cpu")
    ctx = edge_context(sp, st, st.n_train)
    with FlopCounterMode(display=False) as counter:
        out = method_instance("edge_mask", opts).discover(ctx)
    assert len(out.circuits) == 3
    assert planned == pytest.approx(counter.get_total_flops(), rel=1e-9)


def test_plan_refuses_a_method_it_does_not_model_in_one_line():
    from bench.errors import UsageError
    from bench.plan.estimate import Settings
    from bench.plan.make import make_plan

    with pytest.raises(UsageError, match="no plan for method.*edge_integrated_gradients"):
        make_plan("embedded", Settings.defaults(methods=("attribution_patching", "edge_integrated_gradients")))


def test_plan_of_the_edge_methods_on_the_embedded_world_has_their_rows():
    from bench.plan.estimate import Settings
    from bench.plan.make import make_plan

    plan = make_plan("embedded", Settings.defaults(methods=("edge_mask", "edge_attribution_patching")))
    rows = {m.method: m for m in plan.methods}
    assert set(rows) == {"edge_mask", "edge_attribution_patching", "evaluator", "edge evaluator"}
    mask, atp = rows["edge_mask"], rows["edge_attribution_patching"]
    assert mask.unit == atp.unit == "edges"
    # 8 lambdas x 16 prompts x the busiest site's 16 nodes of the 48-node universe in one segment forward
    assert mask.rows == 8 * 16 * 16 and atp.rows == 16 * 16
    assert mask.working > atp.working > 0
    assert mask.flops > atp.flops > 0 and mask.eval_flops > 0 and atp.eval_flops > 0
    assert "48 nodes (16/16/16 per site)" in mask.notes
