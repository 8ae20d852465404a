"""Memory by plan (bench.plan.budget): batch-like options fitted to a memory budget, checked by bench.plan.estimate's own
whole-method simulations; user options kept; an impossible budget is one line; Gemma-2-9B fits 80 GiB."""

from __future__ import annotations

import argparse
import logging

import pytest

from bench.errors import UsageError
from bench.plan import budget as B
from bench.plan.estimate import GIB, GPU_FRAGMENTATION, GPU_RESERVE_GIB

# A small random-weight Gemma-2-like preset: architecture only (bench plan reads the arch table; nothing loads).
TINY = """
[tiny-gemma]
description = "a small Gemma-2-like model for bench.plan.budget tests (architecture only)"
model = "tiny-gemma-budget-test"
sae_release = "none"
sae_ids = ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]
dtype = "float32"

[tiny-gemma.arch]
family = "gemma2"
n_layers = 3
d_model = 64
d_mlp = 256
n_heads = 4
n_key_value_heads = 2
d_head = 16
d_vocab = 4000
d_sae = 512
sae_architecture = "jumprelu"
"""
N = 16  # train and test prompts


def fits(total_bytes: float, budget_gib: float) -> bool:
    """bench plan's rule, written out independently: peak x 1.05 + 1 GiB within the budget."""
    return total_bytes * (1 + GPU_FRAGMENTATION) + GPU_RESERVE_GIB * GIB <= budget_gib * GIB


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("preset") / "tiny.toml"
    path.write_text(TINY)
    return str(path)


def _cfg(preset, **kw):
    from bench.run.config import RunConfig

    return RunConfig(preset=preset, n_train=N, n_test=N, tasks=("sva",), seeds=(0,), **kw)


def _budget_for(fitter, working_bytes: float) -> float:
    """The budget (GiB) that leaves exactly ``working_bytes`` for one method's run."""
    return ((fitter.static_total + fitter.resident_per_setup + working_bytes) * (1 + GPU_FRAGMENTATION)) / GIB + GPU_RESERVE_GIB


def _whole_run_working(fitter, name: str, options: dict, max_rows: int) -> int:
    """bench.plan.estimate's own simulation of the whole method (every batch, chunk and step) or of the evaluator."""
    import dataclasses

    from bench.plan.contexts import fresh_state
    from bench.plan.estimate import _sim_one, method_instance, plan_evaluator

    sp, st = fitter.sp, fitter.settings
    fresh_state(sp)  # as make_plan before each method, and the fitter before each candidate
    if name == B.EVALUATOR:
        return plan_evaluator(sp, dataclasses.replace(st, max_rows=max_rows), None)[0].working
    m = method_instance(name, options)
    if name == "integrated_gradients":
        # the whole run at the ladder's top count, every internal batch (the plan itself simulates
        # only the first three: bench.plan.estimate.ig_peak_steps, which this checks)
        from bench.plan.estimate import make_context
        from bench.plan.simulate import simulate

        top = method_instance(name, {**options, "n_steps": m.config.step_ladder()[-1]})
        ctx = make_context(sp, st, min(m.config.batch_size, st.n_train))
        whole = simulate(sp, lambda: top.discover(ctx), flops=False).peak
        fresh_state(sp)
        assert _sim_one(sp, st, name, m, m.config, st.n_train, st.seq_len, full=False)[0].peak == whole
        return whole
    return _sim_one(sp, st, name, m, m.config, st.n_train, st.seq_len, full=False)[0].peak


def test_the_one_chunk_simulation_equals_the_whole_run(tiny):
    """The fit simulates one chunk (batch, lambda group, captum internal batches) per rung: the same peak as
    bench.plan.estimate's simulation of the whole method."""
    f = B.fitter(tiny, _cfg(tiny))
    cases = [("integrated_gradients", {"batch_size": 16, "internal_batch_size": 48}),
             ("integrated_gradients", {"batch_size": 3, "internal_batch_size": 3}), ("integrated_gradients", {}),
             ("binary_mask", {"max_rows": 48}), ("binary_mask", {"max_rows": 10, "batch_size": 5}),
             ("attribution_patching", {"batch_size": 5}), ("activation_patching", {"forward_batch": 64}),
             ("activation_magnitude", {"batch_size": 4}), (B.EVALUATOR, {"max_rows": 7}), (B.EVALUATOR, {"max_rows": 40}),
             ("greedy", {}), ("greedy", {"batch_size": 3, "max_rows": 5}), ("greedy", {"batch_size": 20, "max_rows": 2000})]
    for name, opts in cases:
        whole = _whole_run_working(f, name, opts, opts.get("max_rows", 1024))
        assert f.working(name, opts) == whole, (name, opts)


def test_fitted_options_fit_the_budget_where_the_defaults_do_not(tiny):
    cfg = _cfg(tiny)
    f = B.fitter(tiny, cfg)
    budget = _budget_for(f, 20e6)  # 20 MB of working memory: the defaults of four of them need 50-450 MB
    result = B.fit(tiny, cfg, budget)
    resident = result.resident
    assert set(result.methods) == {*cfg.methods, B.EVALUATOR}
    over = []
    for name, mf in result.methods.items():
        opts = mf.options
        # the default, and the fitted options, each simulated as a whole run by bench.plan.estimate's code path
        default = _whole_run_working(f, name, {}, 1024)
        chosen = _whole_run_working(f, name, opts, opts.get("max_rows", 1024) if name == B.EVALUATOR else 1024)
        assert fits(f.static_total + resident + chosen, budget), (name, opts, chosen)
        if not fits(f.static_total + resident + default, budget):
            over.append(name)
            assert mf.changed and mf.rows < mf.default_rows, name
            assert fits(mf.peak, budget) and not fits(mf.default_peak, budget), name
    assert {"binary_mask", "integrated_gradients", "activation_patching", "evaluator"} <= set(over)
    # Largest that fits: one more row per forward than chosen would not (checked where the rung above exists).
    ap = result.methods["integrated_gradients"]
    above = B.ladder("integrated_gradients", f.method("integrated_gradients", {}).config, set(), N, N, 1024)
    bigger = [r for r in above if r.rows > ap.rows]
    assert bigger and not fits(f.static_total + resident + f.working("integrated_gradients", bigger[-1].opts), budget)


def test_greedy_ladder_shrinks_the_pool_and_the_elimination_together():
    from methods.greedy import GreedyConfig

    cfg = GreedyConfig()  # max_rows 512, batch_size 32, 32 prompts: IG at 16 prompts x 10 steps = 160 rows
    rungs = B.ladder("greedy", cfg, set(), 128, 128, 1024)
    rows = [r.rows for r in rungs]
    assert rows == sorted(set(rows), reverse=True) and rows[0] == 512 and rows[-1] == 10
    assert rungs[0].opts == {"max_rows": 512, "batch_size": 32}
    assert rungs[1].opts == {"max_rows": 480, "batch_size": 15}  # IG 150 rows; max_rows in proportion
    assert next(r for r in rungs if r.rows == 32).opts == {"max_rows": 32, "batch_size": 1}
    assert rungs[-1].opts == {"max_rows": 10, "batch_size": 1}  # then max_rows alone, down to IG's 10 rows
    # max_rows pinned: only the pool's batches shrink (31: AtP's), down to one prompt (IG: 10 steps of it)
    pinned = B.ladder("greedy", cfg, {"max_rows"}, 128, 128, 1024)
    assert {r.opts["max_rows"] for r in pinned} == {512}
    assert [r.opts["batch_size"] for r in pinned] == [32, 31, *range(15, 0, -1)] and pinned[-1].rows == 10
    # batch_size pinned: whole circuits of 32 prompts fewer per forward, down to the pool's 160 rows
    fixed = B.ladder("greedy", cfg, {"batch_size"}, 128, 128, 1024)
    assert [r.opts["max_rows"] for r in fixed] == [512, 480, 448, 416, 384, 352, 320, 288, 256, 224, 192, 160]
    assert {r.opts["batch_size"] for r in fixed} == {32}


def test_a_fitting_budget_keeps_every_default(tiny):
    from bench.run.setup import build_method

    cfg = _cfg(tiny)
    result = B.fit(tiny, cfg, 100.0)
    for name, mf in result.methods.items():
        assert not mf.changed, name
        if name != B.EVALUATOR:
            default = build_method(name, cfg).config
            assert all(getattr(default, k) == v for k, v in mf.options.items()), name
    assert result.options[B.EVALUATOR] == {"max_rows": 1024}


def test_user_options_are_never_overridden(tiny):
    user = {"binary_mask": {"max_rows": 64}, "attribution_patching": {"batch_size": 12},
            "integrated_gradients": {"batch_size": 4}}
    cfg = _cfg(tiny, method_options=user, max_rows=40)
    f = B.fitter(tiny, cfg)
    budget = _budget_for(f, 40e6)
    result = B.fit(tiny, cfg, budget, max_rows_pinned=True)
    opts = result.options
    assert opts["binary_mask"]["max_rows"] == 64 and opts["binary_mask"]["batch_size"] < 16  # only batch_size fitted
    assert opts["attribution_patching"] == {"batch_size": 12}
    assert opts["integrated_gradients"]["batch_size"] == 4
    assert all(fits(mf.peak, budget) for mf in result.methods.values())
    assert opts[B.EVALUATOR] == {"max_rows": 40}
    # through the run's path: the user's keys win in the merged method options
    args = argparse.Namespace(max_memory=budget, device="cpu", executor="inline", jobs=1, max_rows=40)
    out = B.apply_budget(cfg, args)
    assert out.method_options["binary_mask"]["max_rows"] == 64
    assert out.method_options["attribution_patching"] == {"batch_size": 12}
    assert out.method_options["integrated_gradients"]["batch_size"] == 4
    assert out.max_rows == 40


def test_an_impossible_budget_is_one_line_with_exit_2(tiny, tmp_path, capsys):
    from bench.cli.main import main

    cfg = _cfg(tiny, method_options={"binary_mask": {"batch_size": 16}})
    f = B.fitter(tiny, cfg)
    one_lambda = f.working("binary_mask", {"batch_size": 16, "max_rows": 16})
    budget = _budget_for(f, max(f.setup_peak, 0.5 * one_lambda) * 1.01)
    assert budget > 1.0
    code = main(["run", "--preset", tiny, "--methods", "binary_mask,attribution_patching", "--tasks", "sva",
                 "--n-train", str(N), "--n-test", str(N), "--seed", "0", "--out", str(tmp_path / "r"), "--no-progress",
                 "--option", "binary_mask.batch_size=16", "--max-memory", f"{budget:.6f}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and err.startswith("error: memory budget")
    assert "binary_mask needs" in err and "16 row(s)" in err and "batch_size" in err and "bfloat16" in err
    assert not (tmp_path / "r").exists()  # refused before anything ran
    with pytest.raises(UsageError, match="task setup alone needs"):
        B.fit(tiny, _cfg(tiny), 1.0001)


def test_the_run_budget_comes_from_the_flag_or_cuda_and_is_absent_on_cpu(tiny, monkeypatch, caplog):
    import torch

    from bench.cli.main import build_parser
    from bench.cli.run import _config

    def ns(*extra):
        return build_parser().parse_args(["run", "--preset", tiny, "--methods", "attribution_patching,binary_mask",
                                          "--tasks", "sva", "--n-train", str(N), "--n-test", str(N), *extra])

    # CPU, no --max-memory: nothing is simulated and nothing changes
    monkeypatch.setattr(B, "fitter", lambda *a, **k: pytest.fail("planned without a budget"))
    args = ns()
    cfg = _config(args, args.tasks, args.methods)
    assert cfg.method_options == {} and cfg.max_rows == 128  # the CPU default (benchmarks/test_eval_rows.py)
    monkeypatch.undo()
    # CUDA: the device's total memory (a fake 1.2 GiB device)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: argparse.Namespace(total_memory=int(1.2 * GIB)))
    assert B.run_budget(ns("--device", "cuda"))[0] == pytest.approx(1.2)
    assert B.run_budget(ns("--device", "cuda", "--max-memory", "3"))[0] == 3.0
    assert B.run_budget(ns("--device", "cuda", "--executor", "process", "--jobs", "2"))[0] == pytest.approx(0.6)
    monkeypatch.undo()
    # --max-memory on the run path: fitted options land in the config, one log line per method
    with caplog.at_level(logging.INFO, logger="bench"):
        args = ns("--max-memory", "1.12")  # the mask's default 256 rows do not fit here (176 do)
        cfg = _config(args, args.tasks, args.methods)
    assert cfg.method_options["binary_mask"]["max_rows"] < 256 and cfg.max_rows <= 128
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("budget: ")]
    assert sorted(line.split()[1] for line in lines) == ["attribution_patching", "binary_mask", "evaluator"]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32"])
def test_gemma_2_9b_fits_80_gib(dtype):
    """The paper's setting: every method's fitted peak is within 80 GiB less the margin; the defaults were not."""
    from bench.run.config import RunConfig

    cfg = RunConfig(preset="gemma-2-9b")
    result = B.fit("gemma-2-9b", cfg, 80.0, dtype=dtype, setups=12)
    assert set(result.methods) == {*cfg.methods, B.EVALUATOR}
    for name, mf in result.methods.items():
        assert fits(mf.peak, 80.0), (name, mf.peak / GIB)
    for name in ("binary_mask", "integrated_gradients", "attribution_patching"):
        assert not fits(result.methods[name].default_peak, 80.0) and result.methods[name].changed, name
    assert result.methods["binary_mask"].default_peak > 140 * GIB  # the issue: 147 GiB at the defaults
