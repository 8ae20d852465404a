"""The runner on every executor: the same rows as inline; crashing, hogging and hanging plugins
become error rows while the other cells finish; a killed Ray driver resumes with only the missing
cells; edited evaluation code recomputes every cached cell, an edited method only its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.cli.main import main
from bench.run.costs import COST_METRICS

ROOT = Path(__file__).resolve().parents[1]
COST = COST_METRICS  # measurements, not results: excluded from equality

pytestmark = pytest.mark.slow


def _table(out: Path) -> pd.DataFrame:
    df = pd.read_parquet(out / "results.parquet")
    df = df[~df.metric.isin(COST)].copy()
    df["per_prompt"] = df["per_prompt"].map(tuple)
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def _argv(world: Path, out: Path, *extra: str, methods: str = "binary_mask,attribution_patching,random",
          seeds: str = "0,1") -> list[str]:
    return ["run", "--methods", methods, "--tasks", "sva", "--seeds", seeds, "--world", str(world), "--out", str(out),
            "--quick", "--no-figures", "--no-progress", "--n-train", "16", "--n-test", "16",
            *(["--option", "binary_mask.steps=8", "--option", "binary_mask.n_lambdas=3"] if "binary_mask" in methods else []),
            *extra]


def test_process_and_ray_give_the_same_rows_as_inline(tmp_path, tiny_world_dir):
    pytest.importorskip("ray")
    assert main(_argv(tiny_world_dir, tmp_path / "inline")) == 0
    assert main(_argv(tiny_world_dir, tmp_path / "process", "--executor", "process", "--jobs", "2")) == 0
    assert main(_argv(tiny_world_dir, tmp_path / "ray", "--executor", "ray", "--jobs", "2")) == 0
    ref = _table(tmp_path / "inline")
    pd.testing.assert_frame_equal(_table(tmp_path / "process"), ref)
    pd.testing.assert_frame_equal(_table(tmp_path / "ray"), ref)
    mem = pd.read_parquet(tmp_path / "process" / "results.parquet")
    mem = mem[mem.metric == "cell_peak_memory_mb"]
    assert (mem.text == "fresh_process").all() and (mem.value > 0).all()


BAD = '''
import ctypes, os, time
import numpy as np
from bench.api import Method, Scores

class Exits(Method):
    name = "exits"
    def discover(self, ctx):
        os._exit(1)

class Segfaults(Method):
    name = "segfaults"
    def discover(self, ctx):
        ctypes.string_at(0)

class Hogs(Method):
    name = "hogs"
    def discover(self, ctx):
        block = np.ones(200 * 2**20)  # 1.6 GB, far above the 400 MB limit
        return Scores({})

class Hangs(Method):
    name = "hangs"
    def discover(self, ctx):
        time.sleep(600)
'''


@pytest.mark.parametrize("executor", ["process", "ray"])
def test_crashes_hogs_and_hangs_become_error_rows(tmp_path, tiny_world_dir, executor, capsys):
    if executor == "ray":
        pytest.importorskip("ray")
    f = tmp_path / "bad.py"
    f.write_text(textwrap.dedent(BAD))
    methods = f"attribution_patching,{f}:Exits,{f}:Segfaults,{f}:Hogs,{f}:Hangs"
    out = tmp_path / "out"
    argv = ["run", "--methods", methods, "--tasks", "sva", "--seeds", "0", "--world", str(tiny_world_dir), "--out", str(out),
            "--quick", "--no-figures", "--no-progress", "--n-train", "16", "--n-test", "16",
            "--executor", executor, "--jobs", "2", "--cell-timeout", "25", "--cell-max-memory", "400"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    df = pd.read_parquet(out / "results.parquet")
    errors = df[df.status == "error"].set_index("method")["error"]
    assert set(errors.index) == {"exits", "segfaults", "hogs", "hangs"}
    assert "exit" in errors["exits"] or "crash" in errors["exits"]
    assert "crash" in errors["segfaults"] or "signal 11" in errors["segfaults"]
    assert "memory limit of 400 MB" in errors["hogs"]
    assert "timeout of 25 s" in errors["hangs"]
    ok = df[df.method == "attribution_patching"]
    assert (ok.status == "ok").all() and (ok.metric == "faithfulness_sae_norm").sum() >= 5


def test_killed_ray_driver_resumes_with_only_the_missing_cells(tmp_path, tiny_world_dir):
    pytest.importorskip("ray")
    ref = tmp_path / "ref"
    assert main(_argv(tiny_world_dir, ref)) == 0
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "bench", *_argv(tiny_world_dir, out, "--executor", "ray", "--jobs", "2")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / "cells").glob("*.sha256"))) < 3:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started
    proc.wait()
    done_before = len(list((out / "cells").glob("*.sha256")))
    total = 2 * (1 + 3)  # seeds x (reference + methods)
    assert 3 <= done_before < total
    final = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    cells = json.loads((out / "run.json").read_text())["cells"]
    assert cells == {"run": total - done_before, "kept_from_earlier": done_before, "failed": 0}
    pd.testing.assert_frame_equal(_table(out), _table(ref))


def _edited(monkeypatch, suffix: str) -> None:
    """Make the cache keys read the file ending in ``suffix`` as if it had been edited."""
    from bench.run import keys

    real = keys._read_source
    monkeypatch.setattr(keys, "_read_source", lambda p: real(p) + (b"\n# edited\n" if str(p).endswith(suffix) else b""))
    keys.clear()


def test_editing_the_evaluator_recomputes_every_cell_and_editing_a_method_only_its_own(tmp_path, tiny_world_dir,
                                                                                      monkeypatch):
    from bench.run import keys

    out = tmp_path / "out"
    argv = _argv(tiny_world_dir, out, methods="random,activation_magnitude", seeds="0")
    cells = lambda: json.loads((out / "run.json").read_text())["cells"]  # noqa: E731
    try:
        assert main(argv) == 0
        assert main(argv) == 0
        assert cells() == {"run": 0, "kept_from_earlier": 3, "failed": 0}  # reference + two methods
        _edited(monkeypatch, "methods/random_ranking.py")
        assert main(argv) == 0
        assert cells() == {"run": 1, "kept_from_earlier": 2, "failed": 0}  # only random's cell
        _edited(monkeypatch, "bench/eval/evaluate.py")
        assert main(argv) == 0
        assert cells() == {"run": 3, "kept_from_earlier": 0, "failed": 0}  # every cell
    finally:
        monkeypatch.undo()
        keys.clear()


def test_a_second_run_on_the_same_directory_is_refused(tmp_path, tiny_world_dir, capsys):
    from bench.run.locking import lock_directory

    out = tmp_path / "out"
    out.mkdir()
    with lock_directory(out):
        assert main(_argv(tiny_world_dir, out, methods="random")) == 2
    assert "in use by another run" in capsys.readouterr().err
