"""``bench sweep``: a grid of settings on the tiny world, each run with its own setting into its own
cached directory; the sweep table (one block per setting, the settings' own verdicts), the report, a
byte-stable figure, a rerun that keeps every cell, and one-line usage errors for bad grids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli.main import main

pytestmark = pytest.mark.slow

SITES = ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")  # the tiny world's SAEs
GRID = """\
error_policy = ["drop", "keep"]
sites = [[], ["blocks.1.hook_resid_post"]]
"""
# Small and fast: one task, one seed, three methods, a fixed 3-lambda grid (no adaptive probe).
ARGS = ["--methods", "binary_mask,attribution_patching,random", "--tasks", "sva", "--seeds", "0", "--quick",
        "--n-train", "16", "--n-test", "16", "--option", "binary_mask.steps=8", "--option", "binary_mask.n_lambdas=3",
        "--option", "binary_mask.adaptive=false", "--option", "binary_mask.n_log=0", "--no-progress", "--no-figures"]


@pytest.fixture(scope="module")
def sweep(tiny_world_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    grid = root / "grid.toml"
    grid.write_text(GRID)
    out = root / "out"
    argv = ["sweep", "--grid", str(grid), "--world", str(tiny_world_dir), "--out", str(out), *ARGS]
    assert main(argv) == 0
    return {"out": out, "argv": argv, "info": json.loads((out / "sweep.json").read_text())}


def test_every_setting_runs_with_its_own_values(sweep):
    out, info = sweep["out"], sweep["info"]
    slugs = [s["slug"] for s in info["settings"]]
    assert slugs == ["error_policy=drop__sites=all", "error_policy=drop__sites=1",
                     "error_policy=keep__sites=all", "error_policy=keep__sites=1"]
    for s in info["settings"]:
        assert s["status"] == "done" and s["seconds"] > 0 and s["failures"] == []
        assert Path(s["dir"]) == out / s["slug"]
        df = pd.read_parquet(out / s["slug"] / "results.parquet")
        assert (df.status == "ok").all()
        sites = s["values"]["sites"] or list(SITES)
        # The columns record the setting ...
        assert set(df.error_policy) == {s["values"]["error_policy"]}
        assert set(df.ablation) == {"mean"}
        assert set(df.sae_ids) == {",".join(sites)}
        # ... and the run really used it: circuits only hold latents of the spliced SAEs, and the
        # SAE-spliced model equals the clean model exactly when the error term is kept at every site.
        nodes = df[df.metric == "circuit_node"]
        assert len(nodes) and set(nodes.site) <= set(sites)
        if s["values"]["sites"]:
            assert set(nodes.site) == set(sites)
        ref = df[(df.method == "(reference)") & (df.split == "test")].set_index("metric")["value"]
        same = bool(np.isclose(ref["m_sae"], ref["m_model"], rtol=1e-4, atol=1e-4))
        assert same == (s["values"]["error_policy"] == "keep"), s["slug"]
        run = json.loads((out / s["slug"] / "run.json").read_text())
        assert run["config"]["error_policy"] == s["values"]["error_policy"]
        assert run["config"]["sites"] == s["values"]["sites"]


def test_sweep_table_has_one_block_per_setting_with_its_verdicts(sweep):
    from bench.eval import verdict
    from bench.run.results import load_results

    out, info = sweep["out"], sweep["info"]
    rows = pd.read_csv(out / "sweep_verdicts.csv", dtype={"sites": str})
    assert list(rows.columns[:3]) == ["error_policy", "sites", "setting"]
    for c in ("task", "target", "k", "vs", "diff", "lo", "hi", "verdict"):
        assert c in rows.columns
    slugs = [s["slug"] for s in info["settings"]]
    blocks = [g for _, g in rows.groupby((rows.setting != rows.setting.shift()).cumsum())]
    assert [g.setting.iloc[0] for g in blocks] == slugs  # one contiguous block per setting, in grid order
    keys = None
    for g, s in zip(blocks, info["settings"]):
        assert set(g.error_policy) == {s["values"]["error_policy"]}
        assert set(g.sites) == {"all" if not s["values"]["sites"] else "1"}
        assert set(g.vs) == {"attribution_patching", "random"} and set(g.method) == {"binary_mask"}
        assert (g.lo <= g["diff"]).all() and (g["diff"] <= g.hi).all()
        k = set(zip(g.task, g.target, g.vs))
        assert keys is None or k == keys
        keys = k
    # The sweep's verdicts are the setting's own report verdicts (bench.eval.verdict.build).
    first = slugs[0]
    pw = verdict.build(load_results(out / first))["pairwise"].sort_values(["task", "target", "vs"]).reset_index(drop=True)
    mine = rows[rows.setting == first].reset_index(drop=True)
    assert list(mine.verdict) == list(pw.verdict)
    np.testing.assert_allclose(mine[["diff", "lo", "hi"]].to_numpy(), pw[["diff", "lo", "hi"]].to_numpy())
    report = (out / "sweep_report.md").read_text()
    for section in ("## Across the whole grid", "### Hold", "### Flip", "### error_policy", "### sites", "## Settings"):
        assert section in report, section
    assert "mask vs random on sva @~" in report and " of 4 settings" in report


def test_figure_exists_and_is_byte_stable(sweep, tmp_path):
    from bench.studies.sweep import sweep_figure

    out = sweep["out"]
    drawn = [out / "figures" / "sweep_verdicts.png", out / "figures" / "sweep_verdicts.pdf"]
    assert all(p.stat().st_size > 1000 for p in drawn)
    rows = pd.read_csv(out / "sweep_verdicts.csv", dtype={"sites": str})
    a = sweep_figure(rows, tmp_path / "a")
    b = sweep_figure(rows, tmp_path / "b")
    for pa, pb, po in zip(a, b, drawn):
        assert pa.read_bytes() == pb.read_bytes() == po.read_bytes(), pa.name


def test_rerun_keeps_every_cell(sweep):
    out = sweep["out"]
    assert main(sweep["argv"]) == 0
    info = json.loads((out / "sweep.json").read_text())
    for s in info["settings"]:
        cells = json.loads((out / s["slug"] / "run.json").read_text())["cells"]
        assert cells["run"] == 0 and cells["failed"] == 0 and cells["kept_from_earlier"] == 4, (s["slug"], cells)
        assert s["cells"] == cells


@pytest.mark.parametrize("text, needle", [
    ('error_policy = ["drop"]\nablations = ["mean"]\n', "key 'ablations'"),
    ('error_policy = ["drop", "dorp"]\n', "key 'error_policy'"),
    ('sites = ["blocks.1.hook_resid_post"]\n', "key 'sites'"),
    ('sites = [["blocks.7.hook_resid_post"]]\n', "key 'sites'"),
    ('ablation = []\n', "key 'ablation'"),
    ('ablation = "mean"\n', "key 'ablation'"),
    ('ablation = ["mean" \n', "not valid TOML"),
])
def test_bad_grid_is_one_line_exit_2(tiny_world_dir, tmp_path, capsys, text, needle):
    grid = tmp_path / "bad.toml"
    grid.write_text(text)
    rc = main(["sweep", "--grid", str(grid), "--world", str(tiny_world_dir), "--out", str(tmp_path / "out"), *ARGS])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.count("\n") == 0 and err.startswith("error: ") and str(grid) in err and needle in err, err
    assert not (tmp_path / "out").exists()  # nothing ran


def test_expand_and_slugs():
    from bench.run.config import RunConfig
    from bench.studies.sweep import expand, value_label

    assert value_label("sites", ("blocks.1.hook_resid_post", "blocks.3.hook_resid_post", "blocks.5.hook_resid_post")) == "1-3-5"
    assert value_label("sites", ()) == "all"
    assert value_label("sites", ("blocks.2.hook_mlp_out",)) == "blocks.2.hook_mlp_out"
    base = RunConfig(tasks=("sva",), n_train=8, n_test=8)
    grid = {"error_policy": ["drop", "mean"], "ablation": ["zero"], "sites": [(), ("blocks.3.hook_resid_post",)]}
    pts = expand(grid, base)
    assert [p.slug for p in pts] == ["error_policy=drop__ablation=zero__sites=all", "error_policy=drop__ablation=zero__sites=3",
                                     "error_policy=mean__ablation=zero__sites=all", "error_policy=mean__ablation=zero__sites=3"]
    for p in pts:
        assert (p.cfg.error_policy, p.cfg.ablation, p.cfg.sites) == (p.values["error_policy"], "zero", p.values["sites"])
        assert p.cfg.tasks == ("sva",) and p.cfg.n_train == 8


def test_a_methods_axis_keeps_each_points_own_options_and_refuses_options_no_point_runs():
    from bench.errors import UsageError
    from bench.run.config import RunConfig
    from bench.studies.sweep import expand

    base = RunConfig(tasks=("sva",), methods=("random",), method_options={"binary_mask": {"steps": 3}})
    pts = expand({"methods": [("random",), ("random", "binary_mask")]}, base)
    assert [p.cfg.method_options for p in pts] == [{}, {"binary_mask": {"steps": 3}}]
    bad = RunConfig(tasks=("sva",), method_options={"integrated_gradients": {"steps": 3}})
    with pytest.raises(UsageError, match="no setting of the grid runs 'integrated_gradients'"):
        expand({"methods": [("random",), ("binary_mask",)]}, bad)
