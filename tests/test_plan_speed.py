"""The plan's two speed-ups change no number: the memo of meta kernels (``bench.plan.simulate``) and
the simulations in forked workers (``bench.plan.parallel``). Each is compared with the plain way."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tiny():
    from bench.plan.arch import FAMILIES, Arch, build_meta
    from bench.plan.estimate import Settings

    arch = Arch("t", dict(FAMILIES["gemma2"], n_layers=4, d_model=32, d_mlp=48, n_heads=4, n_key_value_heads=2,
                          d_head=8, d_vocab=97, n_ctx=16, attn_types=["local", "global"] * 2, rotary_dim=8),
                [("blocks.0.hook_resid_post", {"architecture": "jumprelu", "d_sae": 64}),
                 ("blocks.2.hook_resid_post", {"architecture": "jumprelu", "d_sae": 64})], "test")
    return build_meta(arch, "float32", "drop"), Settings.defaults(n_train=8, n_test=8, seq_len=6)


def _sims(sp, st):
    """Setup, a gradient method, IG's interpolation and the mask's sweep, each simulated twice (the
    second run of each answered from the memo, where it is on): (peak, breakdown, FLOPs, nonzero marks)."""
    import torch

    from bench.plan.estimate import make_context, method_instance
    from bench.plan.simulate import simulate

    out = []
    for rep in range(2):
        sp.__dict__.pop("_plan_contexts", None)
        torch.manual_seed(0)
        s = simulate(sp, lambda: make_context(sp, st, 8))  # the setup: memoised() inside must not hide ops
        out.append((s.peak, s.breakdown, s.flops))
        for name, opts in (("attribution_patching", {}), ("integrated_gradients", {"n_steps": 10}),
                           ("binary_mask", {"lambdas": [0.1, 1.0], "steps": 2, "adaptive": False, "restarts": 1}),
                           ("activation_patching", {"max_prompts": 4})):
            ctx = make_context(sp, st, 8)
            ctx.clear_cache()
            m = method_instance(name, opts)
            s = simulate(sp, lambda m=m, ctx=ctx: m.discover(ctx), nonzero_rows=3)
            out.append((rep, name, s.peak, s.breakdown, s.flops, s.nonzero_flops))
    return out


def test_memo_of_meta_kernels_changes_no_peak_breakdown_or_flop(monkeypatch):
    """Every op run by its kernel (memo off) against the memo, cold and warm: the same bytes at the
    peak, per category, and the same FLOPs, op for op."""
    import bench.plan.simulate as S

    sp, st = _tiny()
    with monkeypatch.context() as mp:
        mp.setattr(S, "_kind", lambda func: "")  # nothing is memoisable: every op runs its kernel
        plain = _sims(sp, st)
    S._MEMO.clear()
    memo = _sims(sp, st)
    assert len(S._MEMO) > 100  # the memo was used (the second repetition is answered from it)
    assert memo == plain


def test_memo_never_counts_a_view_as_new_memory():
    """``_unsafe_view`` says 'fresh' in its schema but returns a view: answered from the memo it
    would be a new storage, counted again."""
    import torch

    from bench.plan.simulate import simulate

    sp, _ = _tiny()

    def fn():
        y = torch.empty(64, 32, device="meta")
        views = [torch.ops.aten._unsafe_view(y, [32, 64]) for _ in range(3)]  # 2nd and 3rd: memo lookups
        return y, views

    sim = simulate(sp, fn)
    assert sim.peak == 64 * 32 * 4, sim.peak


def test_in_place_ops_from_the_memo_return_their_argument():
    """An in-place op answered from the memo is its first argument again (no new storage counted;
    that a casting error is still raised: the scalar test below)."""
    import torch

    from bench.plan.simulate import simulate

    sp, _ = _tiny()

    def fn():
        a, b = torch.empty(64, 32, device="meta"), torch.empty(32, device="meta")
        for _ in range(3):  # 2nd and 3rd: memo lookups
            a.add_(b)
        return a, b

    assert simulate(sp, fn).peak == (64 * 32 + 32) * 4


def test_memo_keys_python_scalars_by_type():
    """``1``, ``1.0`` and ``True`` are equal in Python but give different dtypes (and in-place casting
    errors): the memo must not answer one with the other."""
    import torch

    from bench.plan.simulate import memoised

    with memoised():
        assert torch.full((2,), 1, device="meta").dtype == torch.long
        assert torch.full((2,), 1.0, device="meta").dtype == torch.float32
        assert torch.full((2,), True, device="meta").dtype == torch.bool
        ints = torch.empty(4, dtype=torch.long, device="meta")
        ints.add_(1)
        with pytest.raises(RuntimeError):  # a float can't be added in place to a long tensor
            ints.add_(1.0)


def test_every_memo_answer_of_a_whole_plan_is_the_kernels(monkeypatch):
    """The plan of every method (node and edge) and the evaluators on the embedded world, with each
    answer the memo would give checked against the kernel's (shape, strides, offset, storage size,
    dtype, FLOPs; an in-place op's argument unchanged): the stand-in contexts' setup included."""
    import bench.plan.simulate as S
    from bench.plan.edges import EDGE_MODELLED
    from bench.plan.estimate import MODELLED, Settings
    from bench.plan.make import make_plan

    monkeypatch.setattr(S, "_VERIFY", [True])
    S._MEMO.clear()
    st = Settings.defaults(methods=MODELLED + EDGE_MODELLED, n_train=16, n_test=16)
    plan = make_plan("embedded", st, jobs=1)
    assert len(plan.methods) == len(st.methods) + 2 and len(S._MEMO) > 100


def test_plan_in_forked_workers_equals_the_plan_in_one_process():
    """``make_plan(jobs=2)`` forks after the model is built; each simulation starts from the same state
    (seed, no train prefix cached by an earlier method), so which process ran it changes nothing.
    (Greedy's pool runs IG and AtP: it is the method that read another's cached prefix before.)"""
    from bench.plan.estimate import Settings
    from bench.plan.make import make_plan
    from bench.plan.parallel import can_fork

    if not can_fork():
        pytest.skip("no fork on this platform: the plan runs in one process there")
    st = Settings.defaults(methods=("greedy", "integrated_gradients", "attribution_patching"), n_train=32,
                           n_test=32)
    one = make_plan("embedded", st, jobs=1).to_dict()
    two = make_plan("embedded", st, jobs=2).to_dict()
    assert two == one


def test_forked_map_keeps_order_and_survives_a_dead_worker():
    import os

    from bench.plan.parallel import can_fork, forked_map

    if not can_fork():
        pytest.skip("no fork on this platform")
    parent = os.getpid()

    def fn(x):
        if x == 2 and os.getpid() != parent:
            os._exit(1)  # a worker dies (as when killed for memory): its item is redone in the parent
        return x * x

    seen = []
    assert forked_map(fn, [0, 1, 2, 3], 2, seen.append) == [0, 1, 4, 9]
    assert sorted(seen) == [0, 1, 2, 3]
    pids = forked_map(lambda x: os.getpid(), list(range(6)), 2)
    assert set(pids) - {parent}  # the items did run in workers


def test_an_error_in_a_worker_is_raised_here():
    from bench.plan.parallel import can_fork, forked_map

    if not can_fork():
        pytest.skip("no fork on this platform")

    def fn(x):
        if x == 1:
            raise ValueError("planted")
        return x

    with pytest.raises(ValueError, match="planted"):
        forked_map(fn, [0, 1, 2, 3], 2)


def test_forked_workers_survive_the_parents_openmp_pool():
    """A parent that has run an OpenMP region (any sizeable CPU op) and forks: a child entering one
    hangs in GNU OpenMP unless it is set to one thread first (``parallel._worker_init``). Run in a
    subprocess with a time limit, so a hang fails instead of stalling the suite."""
    import subprocess
    import sys

    from bench.plan.parallel import can_fork

    if not can_fork():
        pytest.skip("no fork on this platform")
    code = (
        "import torch\n"
        "from bench.plan.parallel import forked_map\n"
        "torch.set_num_threads(2)\n"
        "x = torch.randn(4_000_000); idx = torch.randint(0, 4_000_000, (4_000_000,))\n"
        "float(x[idx].sum())\n"
        "print(forked_map(lambda i: float(x[idx].sum()) * 0 + i, [1, 2, 3], 2))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[1.0, 2.0, 3.0]"
