"""Degenerate runs a user will hit: a task file no cell can use, every cell failed, a method that
returns no circuits, one task and one method, figures from a results directory with only error rows.
Each prints its one-line errors, writes what it can (a report saying what failed), exits 1 or 2, and
shows no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench.cli.main import main

OOV = {"clean_prefix": "Then, Zyxwv and Laura had a lot of fun at the restaurant. Zyxwv gave a snack to",
       "patch_prefix": "Then, Qwerty and Laura had a lot of fun at the restaurant. Qwerty gave a snack to",
       "clean_answer": " Laura", "patch_answer": " Zyxwv", "case": "x"}

# A task plugin whose generator fails: not bad input of the user's, so its cells fail and the run reports it.
BROKEN_TASK = '''
from tasks.base import Task

class Broken(Task):
    name = "broken"
    version = "1"
    def records(self, n, seed=0):
        raise RuntimeError("the generator broke")
'''

EMPTY = '''
from bench.api import CircuitSet, Method

class NoCircuits(Method):
    name = "no_circuits"
    kind = "circuits"
    def discover(self, ctx):
        return CircuitSet([])
'''


def _common(world: Path, out: Path) -> list[str]:
    return ["--world", str(world), "--out", str(out), "--quick", "--no-progress", "--n-train", "12", "--n-test", "12"]


def test_a_task_file_the_tokenizer_cannot_use_stops_the_run_before_any_cell(tmp_path, tiny_world_dir, capsys):
    f = tmp_path / "oov.jsonl"
    f.write_text("\n".join(json.dumps(OOV) for _ in range(5)) + "\n")  # names out of the vocabulary
    out = tmp_path / "out"
    code = main(["run", "--methods", "attribution_patching", "--tasks", str(f), *_common(tiny_world_dir, out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "not in the model's vocabulary" in err
    assert len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1  # once, not once per seed or cell
    assert not (out / "results.parquet").exists()  # no cell ran


def test_every_cell_failed_writes_a_report_and_exits_1(tmp_path, tiny_world_dir, capsys):
    (tmp_path / "broken_task.py").write_text(BROKEN_TASK)
    out = tmp_path / "out"
    code = main(["run", "--methods", "attribution_patching", "--tasks", f"{tmp_path / 'broken_task.py'}:Broken",
                 *_common(tiny_world_dir, out)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and "the generator broke" in err
    report = (out / "report.md").read_text()
    assert "every cell failed" in report and "Failed cells" in report
    assert main(["figures", "--results", str(out)]) == 0  # redrawing from error rows only: no traceback either
    assert "Traceback" not in capsys.readouterr().err


def test_a_method_with_no_circuits_is_an_error_row_and_one_task_one_method_runs(tmp_path, tiny_world_dir, capsys):
    (tmp_path / "empty.py").write_text(EMPTY)
    out = tmp_path / "out"
    code = main(["run", "--methods", f"{tmp_path / 'empty.py'}:NoCircuits,random", "--tasks", "sva", "--seeds", "0",
                 *_common(tiny_world_dir, out)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and "returned no circuits" in err
    df = pd.read_parquet(out / "results.parquet")
    assert (df[df.method == "random"].status == "ok").all()
    assert "no_circuits" in (out / "report.md").read_text()


def test_figures_from_an_empty_directory_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["figures", "--results", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no results table here" in err and "Traceback" not in err
