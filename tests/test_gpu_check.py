"""``benchmarks/gpu_check.py`` (the speed issue's GPU check) as a CPU dry run at ``--tiny``.

Every part is in the JSON with numbers or a recorded error; a failure planted in one part (the
script's ``GPU_CHECK_FAIL`` variable) or in one method loses nothing else; the row comparison of
the ``all`` part counts a difference beyond its tolerance and an unmatched row.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
METHODS = ("binary_mask", "attribution_patching", "integrated_gradients", "activation_patching")
UNIT = {"binary_mask": "per_step_s", "attribution_patching": "per_batch_s", "integrated_gradients": "per_batch_s",
        "activation_patching": "per_candidate_s"}


def _run(out: Path, fail: str | None = None) -> tuple[dict, float]:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("GPU_CHECK_FAIL", None)
    if fail:
        env["GPU_CHECK_FAIL"] = fail
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--skip-all", "--out", str(out)],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), wall


def _has_numbers(entry: dict, key: str) -> bool:
    per = entry.get(key)
    return (entry.get("status") == "ok" and isinstance(per, float) and per > 0 and math.isfinite(per)
            and entry.get("predicted_working_bytes", 0) > 0 and isinstance(entry.get("working_bytes"), int)
            and math.isfinite(entry.get("ratio_predicted_to_measured", float("nan"))))


def _recorded_error(entry: dict) -> bool:
    return entry.get("status") in ("error", "skipped") and isinstance(entry.get("error"), str) and entry["error"]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("gpu_check") / "gpu_cpu-tiny.json")


def test_the_tiny_dry_run_finishes_in_a_minute_with_every_part(dry_run):
    data, wall = dry_run
    assert wall < 60, f"the tiny CPU dry run took {wall:.1f} s"
    assert data["schema"] == "gpu_check/1" and data["tiny"] is True and data["finished"]
    assert set(data["parts"]) == {"big_shape", "determinism", "all"}
    big = data["parts"]["big_shape"]
    assert big["status"] in ("ok", "partial") and big["arch"]["d_model"] == 64 and len(big["saes"]) == 4
    assert set(big["methods"]) == set(METHODS)
    for name in METHODS:
        e = big["methods"][name]
        assert _has_numbers(e, UNIT[name]) or _recorded_error(e), (name, e)
    assert big["anchor"]["speedup_vs_paper"] is None  # a CPU dry run is no speed
    det = data["parts"]["determinism"]
    assert det["status"] == "ok" and isinstance(det["works_as_cli_is"], bool)
    for name in ("attribution_patching", "integrated_gradients", "binary_mask"):
        m = det["cli"]["methods"][name]
        assert isinstance(m.get("bitwise_equal"), bool) or m.get("error"), m
    assert data["parts"]["all"] == {"status": "skipped", "error": "--skip-all"}


def test_a_failed_part_loses_no_other_part(tmp_path):
    data, _ = _run(tmp_path / "fail_part.json", fail="big_shape")
    big = data["parts"]["big_shape"]
    assert big["status"] == "error" and "planted failure in big_shape" in big["error"] and "traceback_tail" in big
    det = data["parts"]["determinism"]
    assert det["status"] == "ok" and isinstance(det["cli"]["works"], bool)
    assert data["parts"]["all"]["status"] == "skipped" and data["finished"]


def test_a_failed_method_loses_no_other_method(tmp_path):
    data, _ = _run(tmp_path / "fail_method.json", fail="big_shape.integrated_gradients,determinism")
    methods = data["parts"]["big_shape"]["methods"]
    assert data["parts"]["big_shape"]["status"] == "partial"
    assert methods["integrated_gradients"]["status"] == "error" and "planted" in methods["integrated_gradients"]["error"]
    for name in ("binary_mask", "attribution_patching", "activation_patching"):
        assert _has_numbers(methods[name], UNIT[name]), (name, methods[name])
    assert data["parts"]["determinism"]["status"] == "error"


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_row_comparison_counts_differences_and_unmatched_rows(tmp_path):
    import pandas as pd

    mod = _script()
    base = dict(task="dict_keyerror", method="attribution_patching", seed=0, split="test", circuit_kind="cut", circuit=0,
                sample=0, site="", pos=-1, latent=-1, status="ok")
    rows = [dict(base, k=float(k), metric=m, value=0.5 + k / 100) for k in (10, 30) for m in ("faithfulness_sae_norm", "logit_diff")]
    for name, shift, extra in (("gpu", 0.0, []), ("cpu", 1e-4, [dict(base, k=100.0, metric="faithfulness_sae_norm", value=0.9)])):
        (tmp_path / name).mkdir()
        t = pd.DataFrame([dict(r, value=r["value"] + shift) for r in rows] + extra)
        t.to_parquet(tmp_path / name / "results.parquet")
    cmp = mod.compare_rows(tmp_path / "gpu", tmp_path / "cpu")
    assert (cmp["matched"], cmp["only_cpu"], cmp["only_gpu"], cmp["beyond_tolerance"]) == (2, 1, 0, 0)  # logit_diff is no F
    assert cmp["max_abs_diff"] == pytest.approx(1e-4) and cmp["equal_within_tolerance"] is False  # the unmatched row
    tight = mod.compare_rows(tmp_path / "gpu", tmp_path / "cpu", atol=1e-5)
    assert tight["beyond_tolerance"] == 2 and tight["by_method"]["attribution_patching"]["beyond_tolerance"] == 2


def test_the_table_reads_the_json(dry_run):
    table = _script().format_table(dry_run[0])
    assert "| binary_mask | step |" in table and "TINY shape (not speeds)" in table and "Determinism (ok)" in table
