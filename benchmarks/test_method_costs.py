"""Wall time of each method on each task of the embedded world, with pytest-benchmark.

`make perf` (or `python -m pytest benchmarks --benchmark-enable`) writes pytest-benchmark's JSON
(machine_info, commit_info, per-benchmark stats) to results/perf.json. Forward/backward pass counts
are attached as extra_info. Quality metrics live in the results table, not here.
"""

from __future__ import annotations

import pytest

from bench.run.config import DEFAULT_METHODS, DEFAULT_TASKS, RunConfig
from bench.run.setup import build_method, load_task, setup_task

CFG = RunConfig(n_train=32, n_test=32)


@pytest.fixture(scope="session")
def world():
    from bench.model.loading import load_world

    return load_world("embedded")


@pytest.fixture(scope="session")
def setups(world):
    return {t: setup_task(load_task(t), world, CFG, seed=0) for t in DEFAULT_TASKS}


@pytest.mark.parametrize("task", DEFAULT_TASKS)
@pytest.mark.parametrize("method_name", DEFAULT_METHODS)
def test_method_cost(benchmark, setups, method_name, task):
    setup = setups[task]
    method = build_method(method_name, RunConfig(quick=True))
    counter = setup.ctx.spliced.counter
    before = counter.snapshot()
    benchmark.pedantic(method.discover, args=(setup.ctx,), rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(counter.since(before))
    benchmark.extra_info["n_candidates"] = int(sum(c.sum() for c in setup.ctx.candidates.values()))


def test_spliced_forward(benchmark, setups):
    setup = setups["dict_keyerror"]
    benchmark(setup.ctx.spliced.run, setup.train.clean)
