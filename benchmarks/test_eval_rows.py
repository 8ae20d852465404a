"""Evaluator throughput against rows per forward (``--max-rows``), on the embedded world's largest task.

Why this exists: on two CPU cores a forward of 64-128 rows scores about twice as many
(circuit, prompt) rows per second as one of 1024 (the ``[rows, pos, d_sae]`` latents of a small
batch stay in cache), so the CPU default of ``--max-rows`` is 128 while CUDA keeps 1024 (or the
memory budget's fit). Run: ``python -m pytest benchmarks/test_eval_rows.py --benchmark-enable
--benchmark-json=benchmarks/eval_rows.json``; compare the rows/s in extra_info.
"""

from __future__ import annotations

import pytest
import torch

from bench.eval.sizes import top_k_circuit
from bench.run.config import RunConfig
from bench.run.setup import load_task, setup_task

CFG = RunConfig(n_train=128, n_test=128)
SIZES = [1, 3, 10, 30, 100, 300, 1000, 3000]


@pytest.fixture(scope="module")
def setup():
    from bench.model.loading import load_world

    return setup_task(load_task("dict_keyerror"), load_world("embedded"), CFG, seed=0)


@pytest.mark.parametrize("max_rows", [64, 128, 256, 1024])
def test_evaluator_rows_per_second(benchmark, setup, max_rows):
    ev = setup.evaluator
    g = torch.Generator().manual_seed(0)
    ranking = {s: torch.rand(u.shape, generator=g) for s, u in setup.universe.items()}
    masks = [top_k_circuit(ranking, setup.universe, k).masks for k in SIZES]
    ev.max_rows = max_rows
    benchmark.pedantic(ev.lds, args=(masks, "test"), rounds=3, iterations=1, warmup_rounds=1)
    rows = len(masks) * len(ev.splits["test"].data)
    benchmark.extra_info.update(rows=rows, rows_per_second=rows / benchmark.stats.stats.median, max_rows=max_rows)
