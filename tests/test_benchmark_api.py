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
from bench.run.costs import COST_METRICS

pytestmark = pytest.mark.slow

COST = COST_METRICS  # measurements, not results: excluded from equality
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
    _check_self_contained(saved / "report.html", saved)
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


def _check_self_contained(page, base):
    """Every figure of report.md is in report.html as a data URI holding that very PNG: no broken image."""
    import base64
    import re

    html = page.read_text()
    linked = re.findall(r"!\[[^]]*\]\(([^)]+)\)", (base / "report.md").read_text())
    srcs = re.findall(r'<img alt="[^"]*" src="([^"]+)"', html)
    assert linked and len(srcs) == len(linked)
    for src, rel in zip(srcs, linked):
        assert src.startswith("data:image/png;base64,"), src[:60]
        assert base64.b64decode(src.split(",", 1)[1]) == (base / rel).read_bytes()
    assert "figure not found" not in html


def test_a_missing_figure_is_named_in_the_page_not_a_broken_image(tmp_path):
    from bench.report.html import write_html

    (tmp_path / "figures").mkdir()
    png = bytes.fromhex("89504e470d0a1a0a") + b"not really a png but bytes"
    (tmp_path / "figures" / "a.png").write_bytes(png)
    (tmp_path / "report.md").write_text("# R\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![a](figures/a.png)\n\n![b](figures/b.png)\n")
    page = write_html(tmp_path).read_text()
    assert "<table>" in page and "data:image/png;base64," in page
    assert '<span class="missing">[figure not found: figures/b.png]</span>' in page
    assert 'src="figures/' not in page


def test_a_task_object_runs_like_its_name_and_shadows_nothing(tmp_path):
    from bench.run import runner, setup
    from tasks import SubjectVerbAgreement

    model, saes = _notebook_load()
    kw = dict(methods=["random"], seeds=[0], n_train=8, n_test=8, quick=True, progress=False)
    by_name = bench.evaluate(model, saes, tasks=["sva"], out=tmp_path / "name", **kw)  # before any object is served
    res = bench.evaluate(model, saes, tasks=[SubjectVerbAgreement()], out=tmp_path / "obj", name="embedded", **kw)
    assert set(res.rows.task) == {"sva"} and not res.failures
    pd.testing.assert_frame_equal(_rows(res.rows), _rows(by_name.rows), check_exact=True)
    # after the call nothing of it is served: the name "sva" is the built-in again, and the model
    # (named "embedded" here) never stood in for the embedded preset
    assert setup._IN_MEMORY_TASKS == {}
    assert type(setup.load_task("sva")) is SubjectVerbAgreement
    assert not [k for k in runner._CACHE if k[0] == "world" and "@memory" in str(k[1])]


def test_the_fingerprint_of_a_model_in_memory_tells_weights_apart():
    import torch

    from bench.benchmark import _fingerprint

    model, saes = _notebook_load()
    before = _fingerprint(model, saes, model.tokenizer)
    assert _fingerprint(model, saes, model.tokenizer) == before
    with torch.no_grad():
        next(iter(saes.values())).W_dec[3, 5] += 1e-3  # one weight of one SAE
    assert _fingerprint(model, saes, model.tokenizer) != before


def test_saes_on_another_device_or_dtype_are_one_line():
    import torch

    model, saes = _notebook_load()
    hook = next(iter(saes))
    saes[hook] = saes[hook].to(torch.float64)
    with pytest.raises(UsageError, match=r"saes\['blocks.1.hook_resid_post'\]: on cpu in torch.float64"):
        bench.evaluate(model, saes, **SETTINGS)
