"""The Python API (bench.evaluate) on a model and SAEs loaded with plain TransformerLens, SAELens and
transformers calls, as a notebook would: the same rows as the CLI on the same preset; the saved
folder is redrawn by `bench figures`; bad arguments are one-line usage errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import bench
from bench.cli.main import main
from bench.errors import UsageError

pytestmark = pytest.mark.slow

COST = {"wall_seconds", "peak_memory_mb", "cell_wall_seconds", "cell_peak_memory_mb"}
# What names the model rather than measures it: the preset's name and the model's, and the hash of
# the code version (identical here, excluded for clarity of what is compared).
IDENTITY = ["preset", "model", "code_version"]
SETTINGS = dict(tasks=["sva"], methods=["random", "attribution_patching"], seeds=[0], n_train=16, n_test=16, quick=True)


def _notebook_load():
    """The embedded world, loaded the way a researcher loads their own: no bench code at all."""
    from sae_lens import SAE
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import PreTrainedTokenizerFast

    from bench.model.world.artifacts import EMBEDDED_DIR as world  # only to find the files

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(world / "tokenizer"), local_files_only=True)
    cfg = HookedTransformerConfig(**json.loads((world / "model" / "config.json").read_text()))
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    model.load_state_dict(load_file(str(world / "model" / "model.safetensors")), strict=False)
    saes = {}
    for d in sorted((world / "saes").iterdir()):
        sae = SAE.load_from_disk(str(d))
        saes[sae.cfg.metadata.hook_name] = sae
    return model, saes


def _rows(df: pd.DataFrame) -> pd.DataFrame:
    df = df[~df.metric.isin(COST)].drop(columns=IDENTITY).copy()
    df["per_prompt"] = df["per_prompt"].map(lambda v: tuple(v) if v is not None else None)
    return df.sort_values([c for c in df.columns if c != "per_prompt"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def api_results(tmp_path_factory):
    model, saes = _notebook_load()
    return bench.evaluate(model, saes, out=tmp_path_factory.mktemp("api") / "run", progress=False, **SETTINGS)


def test_the_api_gives_the_cli_rows_for_the_same_model_and_saes(api_results, tmp_path):
    out = tmp_path / "cli"
    assert main(["run", "--methods", "random,attribution_patching", "--tasks", "sva", "--seeds", "0", "--n-train", "16",
                 "--n-test", "16", "--quick", "--no-figures", "--no-progress", "--out", str(out)]) == 0
    cli = pd.read_parquet(out / "results.parquet")
    assert len(api_results.rows) == len(cli) > 0
    pd.testing.assert_frame_equal(_rows(api_results.rows), _rows(cli), check_exact=True)


def test_results_give_the_verdict_and_a_folder_that_bench_figures_redraws(api_results, tmp_path):
    v = api_results.verdict()
    assert {"task", "target", "vs", "diff", "lo", "hi", "verdict"} <= set(v.columns) and len(v)
    saved = api_results.save(tmp_path / "saved")
    assert (saved / "results.parquet").is_file() and (saved / "run.json").is_file()
    assert main(["figures", "--results", str(saved)]) == 0
    assert (saved / "report.md").read_text().startswith("# SAE-latent circuit discovery")
    assert (saved / "figures" / "faithfulness_vs_size.png").is_file()
    paths = api_results.plot("cost", tmp_path / "one")
    assert [p.name for p in paths if p.suffix == ".png"] == ["cost.png"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(saes=None), "a model object needs its SAEs"),
    (dict(methods=["atribution_patching"]), "Did you mean 'attribution_patching'"),
    (dict(binary_mask={"steps": 3}), "not a method of this run"),
    (dict(random=3), "expected a dict of options"),
    (dict(executor="ray"), "runs inline"),
])
def test_bad_arguments_are_one_line_usage_errors(kwargs, message):
    model, saes = _notebook_load()
    args = {**SETTINGS, "saes": saes, **kwargs}
    with pytest.raises(UsageError, match=message):
        bench.evaluate(model, **args)


def test_a_preset_with_saes_or_a_non_model_is_refused():
    with pytest.raises(UsageError, match="a preset brings its own"):
        bench.evaluate("embedded", {"blocks.1.hook_resid_post": object()})
    with pytest.raises(UsageError, match="expected a transformer_lens HookedTransformer"):
        bench.evaluate(object(), {"x": object()})
