"""Bad input gets one clear line and the right exit code; runs resume after SIGKILL with nothing
lost or duplicated; the same seed gives identical rows."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"clean_prefix": "The friends that the dancer visits", "patch_prefix": "The friend that the dancer visits",
        "clean_answer": " go", "patch_answer": " goes", "case": "plural"}
COST = {"wall_seconds", "peak_memory_mb", "cell_wall_seconds", "cell_peak_memory_mb"}  # measurements, not results: excluded from equality


def _jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return str(path)


def _sva_records(n: int = 40) -> list[dict]:
    from tasks import SubjectVerbAgreement

    return SubjectVerbAgreement().records(n, 0)


def _bad_world(src: Path, dst: Path, d_in: int | None = None, hook: str | None = None) -> str:
    """A copy of a world with one SAE replaced by a wrong one."""
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    shutil.copytree(src, dst)
    first = sorted((dst / "saes").iterdir())[0]
    shutil.rmtree(first)
    name = hook or first.name
    sae = StandardSAE(StandardSAEConfig(d_in=d_in or 32, d_sae=16, metadata=SAEMetadata(hook_name=name)))
    sae.save_model(str(dst / "saes" / name))
    return str(dst)


def bad_inputs(tmp: Path, world: Path) -> list[tuple[str, list[str], int, str]]:
    """(case, argv, exit code, fragment of the one-line message)."""
    w = ["--world", str(world), "--quick", "--no-figures", "--no-progress"]
    run = ["run", "--methods", "attribution_patching"]
    out = ["--out", str(tmp / "out")]
    f = tmp
    (f / "notdir").write_text("a file")
    old = tmp / "old"
    old.mkdir()
    (old / "run.json").write_text(json.dumps({"schema_version": 0}))
    return [
        ("unknown task", [*run, "--tasks", "iio", *w, *out], 2, "unknown task 'iio'. Did you mean 'ioi'"),
        ("unknown method", ["run", "--methods", "atribution_patching", "--tasks", "sva", *w, *out], 2, "Did you mean 'attribution_patching'"),
        ("unknown preset", ["all", "--preset", "gema-2-9b", *w, *out], 2, "unknown preset 'gema-2-9b'. Did you mean 'gemma-2-9b'"),
        ("unknown error policy", [*run, "--tasks", "sva", "--error-policy", "keeep", *w, *out], 2, "unknown error policy 'keeep'. Did you mean 'keep'"),
        ("unknown ablation", [*run, "--tasks", "sva", "--ablation", "meen", *w, *out], 2, "unknown ablation 'meen'. Did you mean 'mean'"),
        ("unknown subcommand", ["frobnicate"], 2, "invalid choice"),
        ("missing --tasks", ["run", "--methods", "x"], 2, "required: --tasks"),
        ("n-train too small", [*run, "--tasks", "sva", "--n-train", "1", *w, *out], 2, "--n-train and --n-test must be at least 2"),
        ("bad --option syntax", [*run, "--tasks", "sva", "--option", "steps=3", *w, *out], 2, "expected METHOD.KEY=VALUE"),
        ("unknown method option", [*run, "--tasks", "sva", "--option", "attribution_patching.nope=3", *w, *out], 2, "bad option(s)"),
        ("empty task file", [*run, "--tasks", _jsonl(f / "empty.jsonl", []), *w, *out], 2, "empty.jsonl: file is empty"),
        ("unparseable task file", [*run, "--tasks", str((f / "bad.json").write_text("[{") and f / "bad.json"), *w, *out], 2, "bad.json: not valid JSON"),
        ("missing field", [*run, "--tasks", _jsonl(f / "missing.jsonl", [{k: v for k, v in GOOD.items() if k != "case"}]), *w, *out], 2,
         "missing.jsonl: record 0: missing field(s) case"),
        ("extra field", [*run, "--tasks", _jsonl(f / "extra.jsonl", [{**GOOD, "x": 1}]), *w, *out], 2, "extra.jsonl: record 0: unexpected field(s) x"),
        ("wrong type", [*run, "--tasks", _jsonl(f / "type.jsonl", [{**GOOD, "case": 7}]), *w, *out], 2, "type.jsonl: record 0: field case must be a string"),
        ("multi-token answers only", [*run, "--tasks", _jsonl(f / "multi.jsonl", [{**GOOD, "clean_answer": " go home"}] * 3), *w, *out], 2,
         "multi.jsonl: record 0: clean_answer ' go home' is 2 tokens"),
        ("lengths differ", [*run, "--tasks", _jsonl(f / "len.jsonl", [{**GOOD, "patch_prefix": GOOD["patch_prefix"] + " now"}]), *w, *out], 2,
         "len.jsonl: record 0: clean_prefix is 7 tokens but patch_prefix is 8"),
        ("SAE d_in mismatch", [*run, "--tasks", "sva", "--world", _bad_world(world, tmp / "w1", d_in=7), "--quick", *out], 2,
         "has d_in=7 but the model's residual width is 32"),
        ("hook the model lacks", [*run, "--tasks", "sva", "--world", _bad_world(world, tmp / "w2", hook="blocks.9.hook_resid_post"), "--quick", *out], 2,
         "SAE hook 'blocks.9.hook_resid_post' does not exist"),
        ("no world there", [*run, "--tasks", "sva", "--world", str(tmp / "nowhere"), *out], 2, "no embedded world here"),
        ("unwritable output", [*run, "--tasks", "sva", *w, "--out", str(f / "notdir" / "sub")], 2, "cannot be written"),
        ("other schema version", [*run, "--tasks", "sva", *w, "--out", str(old)], 2, "schema version 0"),
        ("figures without results", ["figures", "--results", str(tmp / "none")], 2, "no results table here"),
        ("undefined faithfulness", [*run, "--tasks", _jsonl(f / "same.jsonl", [{**r, "patch_prefix": r["clean_prefix"]} for r in _sva_records()]),
                                    "--ablation", "counterfactual", *w, *out], 1, "faithfulness undefined on"),
        ("check unknown method", ["check", "atribution_patching"], 2, "Did you mean 'attribution_patching'"),
    ]


def test_bad_inputs_table(tmp_path, tiny_world_dir, capsys):
    cases = bad_inputs(tmp_path, tiny_world_dir)
    assert len(cases) >= 20
    for name, argv, code, fragment in cases:
        try:
            got = main(argv)
        except SystemExit as exc:  # argparse
            got = exc.code
        err = capsys.readouterr().err
        assert got == code, f"{name}: exit {got}, expected {code}; stderr: {err[-800:]}"
        assert fragment in err, f"{name}: {fragment!r} not in stderr: {err[-800:]}"
        lines = [ln for ln in err.splitlines() if ln.startswith("error:") or "usage:" in ln or " ERROR " in ln]
        assert lines, name
        assert "Traceback" not in err, f"{name}: traceback shown"


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
