"""Plugins: the example package installed next to the suite is listed, checked, run and drawn;
broken plugins are isolated with their reason while every other cell completes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "bench-random-baseline"

pytestmark = pytest.mark.slow


def bench(args: list[str], env_extra: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The example plugin pip-installed into its own folder (the suite's environment untouched)."""
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--target", str(target), str(EXAMPLE)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return target


def _pythonpath(*paths: Path) -> dict:
    return {"PYTHONPATH": os.pathsep.join([*map(str, paths), str(ROOT)])}


def test_example_plugin_listed_checked_run_and_drawn(plugin_site, tiny_world_dir, tmp_path):
    env = _pythonpath(plugin_site)
    ls = bench(["ls"], env)
    assert ls.returncode == 0, ls.stderr
    line = next(row for row in ls.stdout.splitlines() if "random_ranking" in row)
    assert "bench-random-baseline 0.1.0" in line and "[ok]" in line

    check = bench(["check", "random_ranking"], env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "xfail check_planted_latent: a random ranking is at chance by design" in check.stdout
    assert "pass  check_model_unchanged" in check.stdout

    out = tmp_path / "res"
    run = bench(["run", "--methods", "random_ranking,attribution_patching", "--tasks", "sva", "--world", str(tiny_world_dir),
                 "--out", str(out), "--quick"], env)
    assert run.returncode == 0, run.stderr[-3000:]
    df = pd.read_parquet(out / "results.parquet")
    rr = df[df.method == "random_ranking"]
    assert (rr.status == "ok").all() and (rr.metric == "faithfulness_sae_norm").sum() >= 5
    assert json.loads(rr.params.iloc[0]) == {"salt": 0}

    # every figure draws a line (or bar, or points) for the plugin
    from figures import FIGURES, style

    seen: dict[str, set[str]] = {}
    real_save = style.save

    def spy(fig, out_dir, name):
        labels = {t.get_text() for ax in fig.axes for t in (ax.get_legend().get_texts() if ax.get_legend() else [])}
        labels |= {t.get_text() for leg in fig.legends for t in leg.get_texts()}
        labels |= {t.get_text() for t in fig.texts}
        seen[name] = labels
        return real_save(fig, out_dir, name)

    style.save = spy
    try:
        for name, fn in FIGURES.items():
            if name in ("mask_nestedness", "mask_training", "case_study", "verdict_matched_sizes"):
                continue  # mask-only figures; the heatmap shows one method's circuit; the verdict names methods on its y axis
            fn(df, tmp_path / "figs")
    finally:
        style.save = real_save
    for name, labels in seen.items():
        assert any("random_ranking" in lab for lab in labels), f"{name}: {sorted(labels)}"


def _fake_dist(site: Path, dist: str, entry: str, target: str, files: dict[str, str]) -> None:
    """An installed distribution written by hand: dist-info metadata + entry point + modules."""
    info = site / f"{dist.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(f"[sae_circuit_bench.methods]\n{entry} = {target}\n")
    for name, text in files.items():
        (site / name).write_text(textwrap.dedent(text))


BROKEN = '''
import torch
from bench.api import Method, Scores

class Raises(Method):
    name = "raises"
    def discover(self, ctx):
        raise RuntimeError("plugin bug: division by zero in my scorer")

class ReturnsNan(Method):
    name = "returns_nan"
    def discover(self, ctx):
        return Scores({s: torch.full((ctx.train.n_pos, ctx.spliced.d_sae(s)), float("nan")) for s in ctx.sites})

class WrongShape(Method):
    name = "wrong_shape"
    def discover(self, ctx):
        return Scores({s: torch.zeros(3, 3) for s in ctx.sites})
'''


def test_broken_plugins_are_isolated(tmp_path, tiny_world_dir):
    site = tmp_path / "site"
    site.mkdir()
    _fake_dist(site, "broken-import", "broken_import", "broken_import_mod:Method",
               {"broken_import_mod.py": "raise ImportError('needs a package that is not installed: foo')\n"})
    (tmp_path / "broken.py").write_text(BROKEN)
    env = _pythonpath(site)
    ls = bench(["ls"], env)
    assert ls.returncode == 0
    assert "broken_import" in ls.stdout and "FAILED TO LOAD" in ls.stdout and "needs a package that is not installed" in ls.stdout

    out = tmp_path / "res"
    f = tmp_path / "broken.py"
    methods = f"attribution_patching,broken_import,{f}:Raises,{f}:ReturnsNan,{f}:WrongShape"
    run = bench(["run", "--methods", methods, "--tasks", "sva,ioi", "--world", str(tiny_world_dir), "--out", str(out), "--quick"], env)
    assert run.returncode == 1, run.stderr[-3000:]  # something failed, and the exit code says so
    assert "cell(s) failed" in run.stderr
    df = pd.read_parquet(out / "results.parquet")
    errors = df[df.status == "error"].set_index(["task", "method"])["error"]
    for task in ("sva", "ioi"):
        assert "needs a package that is not installed" in errors[(task, "broken_import")]
        assert "plugin bug: division by zero" in errors[(task, "raises")]
        assert "NaN" in errors[(task, "returns_nan")]
        assert "shape (3, 3)" in errors[(task, "wrong_shape")]
        ok = df[(df.task == task) & (df.method == "attribution_patching")]
        assert (ok.status == "ok").all() and (ok.metric == "faithfulness_sae_norm").sum() >= 5
    assert (out / "figures" / "faithfulness_vs_size.png").is_file() and "Failed cells" in (out / "report.md").read_text()

    off = bench(["run", "--methods", "broken_import", "--tasks", "sva", "--world", str(tiny_world_dir), "--out", str(out)],
                {**env, "BENCH_NO_PLUGINS": "1"})
    assert off.returncode == 2 and "unknown method 'broken_import'" in off.stderr
