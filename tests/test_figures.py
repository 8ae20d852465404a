"""Every figure and the report render from the rows of a real (tiny) run, byte-identically twice."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.cli.main import main


@pytest.fixture(scope="module")
def tiny_run(tiny_world_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    argv = ["run", "--methods", "binary_mask,attribution_patching,random", "--tasks", "sva,ioi", "--seeds", "0,1",
            "--world", str(tiny_world_dir), "--out", str(out), "--quick", "--no-figures", "--no-progress",
            "--n-train", "24", "--n-test", "24", "--option", "binary_mask.steps=12", "--option", "binary_mask.n_lambdas=3"]
    assert main(argv) == 0
    return out


def test_every_figure_renders_and_is_byte_stable(tiny_run, tmp_path):
    from figures import FIGURES, render_all

    df = pd.read_parquet(tiny_run / "results.parquet")
    a = render_all(df, tmp_path / "a")
    b = render_all(df, tmp_path / "b")
    names = {p.stem for p in a}
    for fig in FIGURES:
        assert any(n.startswith(fig) for n in names), f"figure {fig} was not drawn"
    assert {"case_study_sva", "case_study_ioi"} <= names
    assert all(p.stat().st_size > 1000 for p in a)
    for pa, pb in zip(sorted(a), sorted(b)):
        assert pa.read_bytes() == pb.read_bytes(), pa.name


def test_report_has_the_verdict_with_intervals(tiny_run, tmp_path):
    from bench.report.write import summary, write_report

    df = pd.read_parquet(tiny_run / "results.parquet")
    t = summary(df, n_boot=200)
    m = t["matched"]
    assert set(m.method) == {"binary_mask", "attribution_patching", "random"}
    # percentile intervals of a ratio need not contain the point estimate on a 24-prompt toy; they are ordered
    assert (m.lo <= m.hi).all() and (m.n_seeds == 2).all() and m[["F", "lo", "hi"]].notna().all().all()
    pw = t["pairwise"]
    assert set(pw.vs) == {"attribution_patching", "random"} and set(pw.verdict) <= {"beats", "tied", "loses", "saturated"}
    # "saturated" exactly where both methods' mean F reach 0.95 (a difference there is overshoot, not judged)
    sat = pw[["F_method", "F_vs"]].min(axis=1) >= 0.95
    assert ((pw.verdict == "saturated") == sat).all()
    assert not t["train_test"].empty and not t["area"].empty
    text = write_report(df, tiny_run, tmp_path / "figs", n_boot=200).read_text()
    for section in ("## Headline: F at matched sizes", "## Verdict", "## Train vs test", "## Area against random",
                    "## Completeness at matched sizes", "## Knockout", "## Stability"):
        assert section in text, section
