"""Runs resume after SIGKILL with nothing lost or duplicated; the same seed gives identical rows.
(Bad input: tests/test_bad_input.py.)"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.cli.main import main
from bench.run.costs import COST_METRICS

ROOT = Path(__file__).resolve().parents[1]
COST = COST_METRICS  # measurements, not results: excluded from equality


def _table(out: Path) -> pd.DataFrame:
    df = pd.read_parquet(out / "results.parquet")
    df = df[~df.metric.isin(COST)].copy()
    df["per_prompt"] = df["per_prompt"].map(tuple)  # lists are unhashable: sortable as tuples
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def _argv(world: Path, out: Path, seed: int = 0) -> list[str]:
    return ["run", "--methods", "attribution_patching,binary_mask,integrated_gradients", "--tasks", "sva,ioi",
            "--world", str(world), "--out", str(out), "--quick", "--no-figures", "--no-progress", "--seed", str(seed),
            "--deterministic"]


def test_same_seed_same_rows_other_seed_differs(tmp_path, tiny_world_dir):
    assert main(_argv(tiny_world_dir, tmp_path / "a")) == 0
    assert main(_argv(tiny_world_dir, tmp_path / "b")) == 0
    assert main(_argv(tiny_world_dir, tmp_path / "c", seed=1)) == 0
    a, b, c = (_table(tmp_path / x) for x in "abc")
    pd.testing.assert_frame_equal(a, b)
    assert not a.drop(columns="seed").equals(c.drop(columns="seed"))
    assert set(a.seed) == {0} and {"n_train", "n_test"} <= set(a.columns)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path, tiny_world_dir):
    ref = tmp_path / "ref"
    assert main(_argv(tiny_world_dir, ref)) == 0
    expected = _table(ref)
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "bench", *_argv(tiny_world_dir, out)]
    rng = random.Random(7)
    kills = 0
    for _ in range(10):
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 9.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    final = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-2000:]
    got = _table(out)
    assert kills >= 5
    pd.testing.assert_frame_equal(got, expected)  # no row lost, none duplicated, none half-kept
    cells = list((out / "cells").glob("*.parquet"))
    assert len(cells) == len(list((out / "cells").glob("*.sha256"))) == 2 + 2 * 3
    assert not list((out / "cells").glob(".*.tmp"))
