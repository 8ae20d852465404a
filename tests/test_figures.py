"""Every figure renders from a small synthetic table, byte-identically twice."""

from __future__ import annotations

import json

from bench.results import to_frame


def synthetic_rows() -> list[dict]:
    common = dict(schema_version=1, task_version="1", model="m", preset="p", sae_ids="a", error_policy="drop",
                  ablation="mean", split="test", seed=0, n_train=8, n_test=8, size_unit="nodes")
    rows = []
    for task in ("t1", "t2"):
        base = dict(common, task=task)
        for m, v in (("m_model", 5.0), ("m_sae", 4.5), ("m_empty", 0.5), ("n_candidates", 100.0), ("n_positions", 4.0)):
            rows.append(dict(base, method="(reference)", metric=m, value=v))
        rows.append(dict(base, method="(reference)", metric="tokens", value=float("nan"), circuit_params=json.dumps(["<bos>", "a", "b", "c"])))
        for method, sizes in (("binary_mask", (3, 8, 20)), ("attribution_patching", (1, 5, 25, 100)), ("my_plugin", (2, 10))):
            for i, k in enumerate(sizes):
                for metric, val in (("size_nodes", k), ("size_latents", k), ("faithfulness_norm", min(1.0, k / 20)),
                                    ("completeness_norm", 1 - min(1.0, k / 20))):
                    rows.append(dict(base, method=method, circuit=i, k=k, metric=metric, value=float(val)))
            for metric, val in (("wall_seconds", 1.5), ("forward_prompts", 100.0), ("backward_prompts", 10.0), ("peak_memory_mb", 3.0)):
                rows.append(dict(base, method=method, metric=metric, value=val))
            for j in range(5):
                rows.append(dict(base, method=method, circuit=1, sample=j, metric="knockout_model", value=0.1 * j))
                rows.append(dict(base, method=method, circuit=1, sample=j, metric="knockout_circuit", value=0.1 * j + 0.05))
            for pos, lat in ((1, 7), (3, 2)):
                rows.append(dict(base, method=method, circuit=1, metric="circuit_node", site="blocks.1.hook_resid_post", pos=pos, latent=lat, value=0.5))
        rows.append(dict(base, method="binary_mask", circuit=0, metric="nestedness", value=1.0))
        rows.append(dict(base, method="binary_mask", circuit=1, metric="nestedness", value=0.9))
    return rows


def test_every_figure_renders_and_is_byte_stable(tmp_path):
    from figures import FIGURES, render_all

    df = to_frame(synthetic_rows())
    a = render_all(df, tmp_path / "a")
    b = render_all(df, tmp_path / "b")
    names = {p.stem for p in a}
    for fig in FIGURES:
        assert any(n.startswith(fig) for n in names), f"figure {fig} was not drawn"
    assert {"case_study_t1", "case_study_t2"} <= names
    assert all(p.stat().st_size > 1000 for p in a)
    for pa, pb in zip(sorted(a), sorted(b)):
        assert pa.read_bytes() == pb.read_bytes(), pa.name


def test_report_from_synthetic_rows(tmp_path):
    from bench.report import summary, write_report

    df = to_frame(synthetic_rows())
    s = summary(df)
    row = s[(s.task == "t1") & (s.method == "attribution_patching")].iloc[0]
    assert row["nodes@F>=0.9"] == 25 and row["F@k<=10"] == 0.25
    text = write_report(df, tmp_path, tmp_path / "figures").read_text()
    assert "## Headline" in text and "the mask" in text
