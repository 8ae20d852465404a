"""Wall time of the learned mask's lambda sweep: batched (one forward/backward per step for all
lambdas) against sequential (one mask after another), on CPU, same lambdas, steps and seeds.

Run with ``python -m pytest benchmarks/test_lambda_sweep.py --benchmark-enable``. The fixed grid
(no probe) isolates the sweep itself; pass counts and the circuits' sizes go to extra_info, and the
two sweeps must give the same circuits.
"""

from __future__ import annotations

import pytest
import torch

from bench.run.config import RunConfig
from bench.run.setup import load_task, setup_task
from methods.binary_mask import BinaryMask

TASK = "sva"
CFG = RunConfig(n_train=128, n_test=32)
SETTINGS = dict(lambdas=(1e-6, 1e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0), steps=30)
_circuits: dict[str, list] = {}


@pytest.fixture(scope="module")
def setup():
    from bench.model.loading import load_world

    return setup_task(load_task(TASK), load_world("embedded"), CFG, 0)


@pytest.mark.parametrize("sweep", ["batched", "sequential"])
def test_lambda_sweep(benchmark, setup, sweep):
    ctx = setup.ctx
    method = BinaryMask(sweep=sweep, **SETTINGS)
    counter = ctx.spliced.counter
    before = counter.snapshot()
    out = benchmark.pedantic(method.discover, args=(ctx,), rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(counter.since(before))
    benchmark.extra_info.update(task=TASK, n_lambdas=len(SETTINGS["lambdas"]), steps=SETTINGS["steps"],
                                torch_threads=torch.get_num_threads(),
                                sizes=[c.n_nodes(ctx.candidates) for c in out.circuits])
    _circuits[sweep] = out.circuits
    if len(_circuits) == 2:
        a, b = _circuits["batched"], _circuits["sequential"]
        assert all(torch.equal(x.masks[s], y.masks[s]) for x, y in zip(a, b) for s in x.masks)
