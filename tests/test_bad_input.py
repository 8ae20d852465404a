"""Bad input gets one clear line, once, with exit code 2, before the world loads or any cell runs:
never a traceback (tests/test_bad_input.py's table: the CLI's every kind of user input)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest  # noqa: F401 - fixtures

from bench.cli.main import main

GOOD = {"clean_prefix": "The friends that the dancer visits", "patch_prefix": "The friend that the dancer visits",
        "clean_answer": " go", "patch_answer": " goes", "case": "plural"}


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
    broken = tmp / "broken.py"
    broken.write_text("def oops(:\n")
    plain = tmp / "plain.py"
    plain.write_text("X = 1\n")

    def preset(path: Path, drop: str = "", extra: str = "") -> str:
        fields = {"model": '"embedded"', "sae_release": '"embedded"', "sae_ids": '["*"]'}
        lines = ["[mine]", *[f"{k} = {v}" for k, v in fields.items() if k != drop], extra]
        path.write_text("\n".join(lines) + "\n")
        return str(path)

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
        ("unknown method option", [*run, "--tasks", "sva", "--option", "attribution_patching.nope=3", *w, *out], 2,
         "unknown option 'nope'; its options: batch_size"),
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
        # the cases, and more: each caught before the world loads or any cell runs
        ("check a file with a syntax error", ["check", f"{broken}:Foo"], 2, "syntax error"),
        ("check a module that does not exist", ["check", "no_such_pkg.mod:Foo"], 2, "cannot be imported (ModuleNotFoundError"),
        ("check a name the file lacks", ["check", f"{plain}:Missing"], 2, "has no attribute 'Missing'"),
        ("check a target that is no method", ["check", "json:dumps"], 2, "is not a bench Method subclass"),
        ("run a file with a syntax error", ["run", "--methods", f"{broken}:Foo", "--tasks", "sva", *w, *out], 2, "syntax error"),
        ("run a module that does not exist", ["run", "--methods", "no_such_pkg.mod:Foo", "--tasks", "sva", *w, *out], 2,
         "cannot be imported"),
        ("option key misspelt", ["run", "--methods", "random", "--tasks", "sva", "--option", "random.sald=3", *w, *out], 2,
         "method 'random': unknown option 'sald'; its options: salt"),
        ("option for a method not in the run", [*run, "--tasks", "sva", "--option", "binary_mask.steps=notjson", *w, *out], 2,
         "'binary_mask' is not a method of this run"),
        ("option of the wrong type", ["run", "--methods", "binary_mask", "--tasks", "sva", "--option", "binary_mask.steps=notjson",
                                      *w, *out], 2, "option steps='notjson' should be int"),
        ("check with an unknown option", ["check", "random", "--option", "sald=3"], 2, "unknown option 'sald'"),
        ("device this torch lacks", [*run, "--tasks", "sva", "--device", "cuda:7", *w, *out], 2, "this torch has no usable CUDA"),
        ("device that is no device", [*run, "--tasks", "sva", "--device", "gpu", *w, *out], 2, "--device 'gpu'"),
        ("preset file missing a field", [*run, "--tasks", "sva", "--preset", preset(f / "p1.toml", drop="sae_release"), *out], 2,
         "field 'sae_release' is missing"),
        ("preset file with an unknown field", [*run, "--tasks", "sva", "--preset", preset(f / "p2.toml", extra='layers = 3'), *out], 2,
         "unknown field 'layers'"),
        ("preset file with a wrong type", [*run, "--tasks", "sva", "--preset", preset(f / "p3.toml", extra='dtype = 32'), *out], 2,
         "field dtype = 32 should be one of"),
        ("preset file that is not TOML", [*run, "--tasks", "sva", "--preset", str((f / "p4.toml").write_text("[x") and f / "p4.toml"),
                                           *out], 2, "cannot read preset file"),
        ("seeds that are not numbers", [*run, "--tasks", "sva", "--seeds", "a,b", *w, *out], 2, "expected a comma list of integers"),
        ("seed and seeds", [*run, "--tasks", "sva", "--seed", "1", "--seeds", "0,1", *w, *out], 2, "give --seed or --seeds, not both"),
        ("executor misspelt", [*run, "--tasks", "sva", "--executor", "procss", *w, *out], 2, "invalid choice: 'procss'"),
        ("negative jobs", [*run, "--tasks", "sva", "--executor", "process", "--jobs", "-1", *w, *out], 2, "--jobs must be 0"),
        ("a Ray address without Ray", [*run, "--tasks", "sva", "--ray-address", "auto", *w, *out], 2, "--ray-address applies only"),
        ("an SAE site the preset lacks", [*run, "--tasks", "sva", "--sites", "blocks.9.hook_resid_post", *w, *out], 2,
         "unknown SAE site 'blocks.9.hook_resid_post'"),
        ("max-rows zero", [*run, "--tasks", "sva", "--max-rows", "0", *w, *out], 2, "--max-rows must be at least 1"),
        ("a task file that does not exist", [*run, "--tasks", str(f / "nothere.jsonl"), *w, *out], 2, "nothere.jsonl"),
    ]


def test_bad_inputs_table(tmp_path, tiny_world_dir, capsys):
    """Each case: the right exit code, its one line (once: one "error:" line), no traceback, and
    within 20 s (in one process, after the first case has loaded the libraries)."""
    cases = bad_inputs(tmp_path, tiny_world_dir)
    assert len(cases) >= 45
    slow = {}
    for name, argv, code, fragment in cases:
        t0 = time.perf_counter()
        try:
            got = main(argv)
        except SystemExit as exc:  # argparse
            got = exc.code
        seconds = time.perf_counter() - t0
        err = capsys.readouterr().err
        assert got == code, f"{name}: exit {got}, expected {code}; stderr: {err[-800:]}"
        assert fragment in err, f"{name}: {fragment!r} not in stderr: {err[-800:]}"
        assert "Traceback" not in err, f"{name}: traceback shown"
        errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
        if code == 2:
            assert len(errors) == 1, f"{name}: {len(errors)} error lines: {errors}"
        else:
            assert errors, name
        if seconds > 20:
            slow[name] = round(seconds, 1)
    assert slow == {}


def test_what_the_user_typed_fails_before_the_world_loads(tmp_path, tiny_world_dir, capsys, monkeypatch):
    """Names, method targets, options, task files and the device are checked before the world loads:
    with loading made to fail, each still gives its own line."""
    from bench.run import runner

    def no_world(*a, **k):
        raise AssertionError("the world was loaded before the input was checked")

    monkeypatch.setattr(runner, "load_world", no_world)
    runner._CACHE.clear()
    before = {"unknown method", "run a file with a syntax error", "run a module that does not exist", "option key misspelt",
              "option for a method not in the run", "option of the wrong type", "device this torch lacks",
              "device that is no device", "unknown task", "empty task file", "unparseable task file", "missing field",
              "extra field", "wrong type", "a task file that does not exist", "unknown method option"}
    cases = [c for c in bad_inputs(tmp_path, tiny_world_dir) if c[0] in before]
    assert len(cases) == len(before)
    for name, argv, code, fragment in cases:
        got = main(argv)
        err = capsys.readouterr().err
        assert got == code and fragment in err, f"{name}: exit {got}; stderr: {err[-600:]}"
