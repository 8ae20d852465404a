"""``bench accuracy``: accuracy on the records the benchmark uses, and an exact count of prompts seen in training."""

from __future__ import annotations

import json

import pytest

from bench.model.world.build import WorldConfig
from bench.model.world.provenance import training_texts
from tasks import IndirectObjectIdentification
from tasks.base import record
from tasks.ioi import TEMPLATES


def test_accuracy_counts_exactly_the_prompts_the_world_was_trained_on(tiny_world_dir, tmp_path, monkeypatch):
    from bench.studies.accuracy import run_accuracy

    monkeypatch.setenv("BENCH_WORLD_DIR", str(tiny_world_dir))
    # IOI prompts of the benchmark's templates that the tiny world's model really was trained on
    benchmark_len = {len(t.format(A="A", B="B", P="P", S="S", O="O").split()) for t in TEMPLATES}
    trained = [(p, a.split()[0]) for p, a in training_texts(WorldConfig.tiny())
               if a is not None and p.startswith("Then,") and len(p.split()) in benchmark_len][:6]
    assert len(trained) == 6
    bench_recs = IndirectObjectIdentification().records(30, seed=0)
    recs = [record(p, bench_recs[i]["patch_prefix"], " " + io, " " + bench_recs[i]["patch_answer"].strip(), "trained")
            for i, (p, io) in enumerate(trained) if " " + io != bench_recs[i]["patch_answer"]]
    recs += bench_recs[len(recs):]
    f = tmp_path / "mixed.json"
    f.write_text(json.dumps(recs))
    (row,) = run_accuracy("embedded", (str(f),), tmp_path / "acc.json")
    n_trained = sum(r["case"] == "trained" for r in recs)
    assert n_trained >= 4 and row["records"] == len(recs) == row["used"]
    seen = row["seen_in_training"]
    assert seen["seen_as_training_prompt"] == n_trained == seen["seen_as_training_prefix"]
    assert 0.0 <= row["model"]["pairwise_accuracy"] <= 1.0
    saved = json.loads((tmp_path / "acc.json").read_text())
    assert saved["rows"][0]["file"] == "mixed.json" and str(tmp_path) not in json.dumps(saved)


def test_accuracy_reports_a_bad_task_file_as_one_row(tiny_world_dir, tmp_path, monkeypatch):
    from bench.studies.accuracy import run_accuracy

    monkeypatch.setenv("BENCH_WORLD_DIR", str(tiny_world_dir))
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    rows = run_accuracy("embedded", (str(bad), "sva"), None, provenance=False)
    assert "line 1: not valid JSON" in rows[0]["error"] and rows[1]["task"] == "sva" and "seen_in_training" not in rows[1]


@pytest.mark.parametrize("edit, why", [
    (lambda st: st["model"].update(texts_sha256="0" * 64), "no longer reproduces the texts"),
    (lambda st: st["model"].update(n_texts=st["model"]["n_texts"] + 1), "no longer reproduces the texts"),
    (lambda st: st["sae_texts"].update(texts_sha256="0" * 64), "no longer reproduces the texts"),
    (lambda st: st.pop("sae_texts"), "records no training-stream fingerprint"),
    (lambda st: st.update(model="x"), "records no training-stream fingerprint"),
    (lambda st: st["config"].update(saes=[]), "malformed config"),
], ids=["model-sha", "model-count", "sae-sha", "no-sae-record", "model-not-a-dict", "bad-config"])
def test_accuracy_gives_no_counts_when_world_json_cannot_say_what_was_trained_on(
        edit, why, tiny_world_dir, tmp_path, monkeypatch):
    # a world.json whose recorded stream differs from what the code replays (the corpus code changed
    # without a rebuild), or that cannot be read as a record of it: counts would describe another
    # world, so there are none, and the row says why in one line
    import shutil

    from bench.studies.accuracy import run_accuracy

    world = tmp_path / "world"
    shutil.copytree(tiny_world_dir, world)
    stats = json.loads((world / "world.json").read_text())
    edit(stats)
    (world / "world.json").write_text(json.dumps(stats))
    monkeypatch.setenv("BENCH_WORLD_DIR", str(world))
    (row,) = run_accuracy("embedded", ("sva",), None)
    assert "seen_in_training" not in row and "pairwise_accuracy" in row["model"]
    msg = row["seen_in_training_unavailable"]
    assert why in msg and "\n" not in msg, msg


def test_a_world_json_that_is_not_json_is_one_line(tiny_world_dir, tmp_path, monkeypatch):
    import shutil

    from bench.errors import InputError
    from bench.model.loading import load_world

    world = tmp_path / "world"
    shutil.copytree(tiny_world_dir, world)
    (world / "world.json").write_text("{oops")
    with pytest.raises(InputError, match=r"world\.json: not valid JSON"):
        load_world("embedded", world_dir=world)
