"""The embedded world: shipped artifacts reproduce their recorded numbers; `bench train` works."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

from bench.model.world.artifacts import EMBEDDED_DIR
from bench.model.world.corpus import seed_tasks
from bench.model.world.quality import task_quality


def test_shipped_world_is_small_and_safetensors_only():
    files = [p for p in EMBEDDED_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 20 * 2**20
    assert {p.suffix for p in files} <= {".json", ".safetensors"}


def test_shipped_world_reproduces_its_recorded_quality(embedded_world):
    # world.json holds what `bench train` measured on held-out records; the README quotes it.
    # Reloading must give the same numbers (float32 on CPU: identical up to summation order).
    recorded = json.loads((EMBEDDED_DIR / "world.json").read_text())
    for task in seed_tasks():
        records = task.records(recorded["n_eval_records_per_task"], seed=recorded["eval_seed"])
        q = task_quality(embedded_world.spliced.model, embedded_world.tokenizer, records)
        want = recorded["quality_held_out"][task.name]["model"]
        assert q["pairwise_accuracy"] == pytest.approx(want["pairwise_accuracy"], abs=1e-6)
        assert q["logit_diff"] == pytest.approx(want["logit_diff"], rel=1e-4)
        # the targets of the foundation issue
        assert q["pairwise_accuracy"] >= 0.95 and q["logit_diff"] >= 3
        drop = task_quality(embedded_world.spliced.with_policy("drop").run, embedded_world.tokenizer, records)
        want_drop = recorded["quality_held_out"][task.name]["spliced_drop_error"]
        for key in ("pairwise_accuracy", "top1_accuracy"):
            assert q[key] == pytest.approx(want[key], abs=1e-6) and drop[key] == pytest.approx(want_drop[key], abs=1e-6)
        assert drop["logit_diff"] == pytest.approx(want_drop["logit_diff"], rel=1e-4)
        assert drop["logit_diff"] / q["logit_diff"] >= 0.70
    for hook, stats in recorded["saes"].items():
        assert stats["fvu"] <= 0.15, hook
        assert stats["l0"] == embedded_world.spliced.saes[hook].cfg.k  # TopK: L0 is k exactly


@pytest.mark.parametrize("variant", ["lossy", "basis", "random", "every"])
def test_shipped_variants_reproduce_their_recorded_quality(variant):
    # variants.json holds what `bench train --variant` measured; the README quotes it
    from bench.model.loading import load_world

    recorded = json.loads((EMBEDDED_DIR / "variants.json").read_text())[variant]
    world = load_world(f"embedded-{variant}")
    for task in seed_tasks():
        records = task.records(400, seed=12345)
        full = task_quality(world.spliced.model, world.tokenizer, records)
        drop = task_quality(world.spliced.with_policy("drop").run, world.tokenizer, records)
        want = recorded["quality_held_out"][task.name]
        assert full["logit_diff"] == pytest.approx(want["model"]["logit_diff"], rel=1e-4, abs=1e-4)
        assert full["pairwise_accuracy"] == pytest.approx(want["model"]["pairwise_accuracy"], abs=1e-6)
        assert drop["pairwise_accuracy"] == pytest.approx(want["spliced_drop_error"]["pairwise_accuracy"], abs=1e-6)
        assert drop["logit_diff"] == pytest.approx(want["spliced_drop_error"]["logit_diff"], rel=1e-4, abs=1e-4)
        if variant == "every":  # the shipped SAEs after layers 1, 3, 5, copied unchanged
            shipped = load_world("embedded")
            for hook, sae in shipped.spliced.saes.items():
                assert torch.equal(world.spliced.saes[hook].W_dec, sae.W_dec)
            assert len(world.spliced.saes) == world.spliced.model.cfg.n_layers
        if variant == "basis":  # the identity dictionary reconstructs exactly
            assert drop["logit_diff"] == pytest.approx(full["logit_diff"], rel=1e-5)


def test_shipped_saes_load_as_saelens_saes(embedded_world):
    from sae_lens import SAE

    assert len(embedded_world.spliced.saes) == 3
    for hook, sae in embedded_world.spliced.saes.items():
        assert isinstance(sae, SAE) and sae.cfg.metadata.hook_name == hook


@pytest.mark.slow
def test_bench_train_tiny_end_to_end(tmp_path):
    out = tmp_path / "w"
    proc = subprocess.run([sys.executable, "-m", "bench", "train", "--tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert set(summary["tasks"]) == {"dict_keyerror", "list_indexerror", "sva", "ioi"}
    assert (out / "model" / "model.safetensors").is_file() and len(list((out / "saes").iterdir())) == 2
    from bench.model.loading import load_world

    w = load_world("embedded", world_dir=out)
    assert len(w.spliced.sites) == 2


def test_tiny_train_is_seeded(tmp_path):
    from bench.model.world.build import WorldConfig, build_world

    a = build_world(WorldConfig.tiny(), tmp_path / "a")
    b = build_world(WorldConfig.tiny(), tmp_path / "b")
    assert a["file_hashes"] == b["file_hashes"]


def test_paper_preset_fails_fast_offline(monkeypatch):
    from bench.errors import BenchError
    from bench.model.loading import load_world

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(BenchError) as e:
        load_world("gemma-2-9b")
    assert time.perf_counter() - t0 < 60
    msg = str(e.value)
    assert "gemma-2-9b" in msg and "could not fetch" in msg and "\n" not in msg


def test_presets_are_data():
    from bench.model.presets import builtin_presets

    p = builtin_presets()
    assert p["gemma-2-9b"].sae_ids == (
        "layer_7/width_16k/average_l0_92", "layer_14/width_16k/average_l0_67",
        "layer_21/width_16k/average_l0_129", "layer_40/width_16k/average_l0_125")
    assert p["gemma-2-9b"].sae_release == "gemma-scope-9b-pt-res" and p["embedded"].is_embedded
