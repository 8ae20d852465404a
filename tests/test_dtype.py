"""--dtype and a preset's CUDA dtype: the world is loaded in the run's dtype; Gemma presets plan and
run in bfloat16 on CUDA and float32 on CPU; a preset file's dtypes are validated."""

from __future__ import annotations

import pytest
import torch

from bench.errors import UsageError
from bench.model.presets import get_preset
from bench.run.config import RunConfig


def test_gemma_presets_run_in_bf16_on_cuda_and_fp32_on_cpu():
    for name in ("gemma-2-9b", "gemma-2-2b"):
        p = get_preset(name)
        assert p.dtype_on("cuda") == p.dtype_on("cuda:1") == "bfloat16" and p.dtype_on("cpu") == "float32"
        assert p.with_dtype(None, "cuda").dtype == "bfloat16" and p.with_dtype("float32", "cuda").dtype == "float32"
    assert get_preset("embedded").dtype_on("cuda") == "float32"


def test_the_world_is_loaded_in_the_run_dtype(tiny_world_dir):
    from bench.run.runner import world_for

    cfg = RunConfig(world_dir=str(tiny_world_dir), tasks=("sva",), methods=("random",), dtype="bfloat16")
    w = world_for(cfg)
    assert {p.dtype for p in w.spliced.model.parameters()} == {torch.bfloat16}
    assert all({p.dtype for p in sae.parameters()} == {torch.bfloat16} for sae in w.spliced.saes.values())
    assert w.preset.dtype == "bfloat16"
    with pytest.raises(UsageError, match="unknown dtype 'bf16'"):
        RunConfig(dtype="bf16")


def test_a_preset_file_with_a_bad_cuda_dtype_is_one_line(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[mine]\nmodel = "embedded"\nsae_release = "embedded"\nsae_ids = ["*"]\ncuda_dtype = "fp8"\n')
    with pytest.raises(UsageError, match=r"preset 'mine': cuda_dtype 'fp8' is not one of"):
        get_preset(str(path))
