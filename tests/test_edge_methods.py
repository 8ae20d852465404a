"""The edge methods and their harness (issue: edges), on the tiny world.

* The batched soft evaluator (one group per lambda) equals one call per group.
* Edge attribution patching's metric edges equal node attribution patching of the last site's nodes,
  computed through the node path (``masked_logit_diff``), not the edge evaluator.
* The edge mask keeps only candidate edges, and a huge lambda empties it.
* An edge cell's largest cut (every candidate edge) has the node circuit's F, computed by the node
  evaluator; its rows are sized in edges; the edge AtP cell is cut at the edge mask's own counts.
* A CLI run of both edge methods writes the edge verdict, its figure and the case-study graph.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from bench.api import EdgeCircuit
from bench.eval.edges import soft_edge_logit_diff

TOL = 1e-4  # float32 logit differences of order 1 through different batchings (as tests/test_edges.py)


@pytest.fixture(scope="module")
def setup(tiny_world):
    from bench.run.config import make_config
    from bench.run.setup import load_task, setup_task

    cfg = make_config(quick=True, n_train=16, n_test=12, edge_max_nodes=12, n_train_eval=8)
    return setup_task(load_task("ioi"), tiny_world, cfg, 0), cfg


@pytest.fixture(scope="module")
def universe(setup):
    from bench.run.edge_universe import edge_universe

    s, cfg = setup
    return edge_universe(s, cfg)


def test_the_universe_is_a_node_circuit_of_at_most_the_cap(universe, setup):
    s, cfg = setup
    assert 2 <= universe.n_nodes <= cfg.edge_max_nodes
    assert universe.candidates.n_edges() > 0
    # its nodes are the universe's nodes, and each site's node list is its mask's
    for site, m in universe.masks.items():
        assert bool((m <= s.universe[site]).all())
        assert sorted(map(tuple, universe.candidates.nodes[site].tolist())) == sorted(map(tuple, m.nonzero().tolist()))


def test_grouped_soft_edges_equal_one_call_per_group(setup, universe):
    s, _ = setup
    cand = universe.candidates
    g = torch.Generator().manual_seed(0)
    ws = [torch.rand((3, *e.shape), generator=g) * e for e in cand.edges]
    tm = torch.rand((3, *cand.to_metric.shape), generator=g)
    data = s.train.subset(list(range(6)))
    ws = [w.requires_grad_(True) for w in ws]
    tm.requires_grad_(True)
    grouped = soft_edge_logit_diff(s.ctx.spliced, data, cand.nodes, ws, tm, s.ctx.replacement)
    # group j's loss weighted by j + 1: a gradient that leaked between groups would carry another weight
    (grouped.sum(1) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    g_grouped = [w.grad.clone() for w in ws] + [tm.grad.clone()]
    each = []
    for j in range(3):
        wj = [w[j].detach().clone().requires_grad_(True) for w in ws]
        tj = tm[j].detach().clone().requires_grad_(True)
        ld = soft_edge_logit_diff(s.ctx.spliced, data, cand.nodes, wj, tj, s.ctx.replacement)
        ((j + 1) * ld.sum()).backward()
        each.append(ld.detach())
        for got, want in zip([g[j] for g in g_grouped], [x.grad for x in wj] + [tj.grad]):
            assert torch.allclose(got, want, atol=TOL * 10), j  # sums of 6 prompts' gradients
    each = torch.stack(each)
    assert grouped.shape == (3, 6)
    assert torch.allclose(grouped.detach(), each, atol=TOL)
    assert (each[0] - each[1]).abs().max() > 10 * TOL  # the groups really differ
    assert g_grouped[0].abs().max() > 10 * TOL


def test_edge_atp_metric_edges_are_node_atp_of_the_last_site(setup, universe):
    from bench.run.edge_cell import edge_context
    from methods.edge_attribution_patching import EdgeAttributionPatching

    s, _ = setup
    ctx = edge_context(s, universe.candidates)
    scores = EdgeAttributionPatching().discover(ctx)
    # independent: the node path, with the node circuit kept everywhere and the last site's mask a float
    # leaf at the node circuit: d LD / d m at the last site's nodes is grad(LD) * (f - r) there
    sites = ctx.sites
    masks = {site: universe.masks[site].float().to(ctx.spliced.device) for site in sites}
    masks[sites[-1]].requires_grad_(True)
    n = len(ctx.train)
    for start, batch in ctx.train.batches(16):
        (ctx.masked_metric(masks, batch, start).sum() / n).backward()
    nodes = universe.candidates.nodes[sites[-1]]
    want = masks[sites[-1]].grad[nodes[:, 0], nodes[:, 1]].cpu()
    assert torch.allclose(scores.to_metric.float(), want.float(), atol=TOL)
    assert want.abs().max() > 10 * TOL


def test_the_edge_mask_keeps_candidates_only_and_a_huge_lambda_empties_it(setup, universe):
    from bench.run.edge_cell import edge_context
    from methods.edge_mask import EdgeMask

    s, _ = setup
    ctx = edge_context(s, universe.candidates)
    out = EdgeMask(lambdas=(0.0, 1e4), steps=6, restarts=2, batch_size=4, judge_prompts=8).discover(ctx)
    for c in out.circuits:
        assert c.params["restart"] in (0, 1) and len(c.params["restart_objectives"]) == 2
        # the kept restart is the one with the lowest objective on the judge prompts
        assert c.params["restart_objectives"][c.params["restart"]] == min(c.params["restart_objectives"])
    assert out.circuits[1].n_edges() == 0
    assert out.circuits[0].n_edges() > 0


@pytest.fixture(scope="module")
def cells(setup):
    from bench.run.edge_cell import run_edge_cell
    from bench.run.setup import build_method

    s, cfg = setup
    cfg = dataclasses.replace(cfg, method_options={"edge_mask": {"steps": 6, "n_lambdas": 3, "batch_size": 4}})
    mask_rows = run_edge_cell(s, build_method("edge_mask", cfg), cfg)
    own = sorted({int(r["value"]) for r in mask_rows if r["metric"] == "size_edges" and r.get("circuit_kind") == "native"})
    atp_rows = run_edge_cell(s, build_method("edge_attribution_patching", cfg), cfg, own)
    return pd.DataFrame(mask_rows), pd.DataFrame(atp_rows), own


def test_keeping_every_candidate_edge_scores_the_node_circuit(cells, setup, universe):
    s, _ = setup
    _, atp, _ = cells
    n_all = universe.candidates.n_edges()
    top = atp[(atp.metric == "logit_diff") & (atp.split == "test") & (atp.k == n_all) & (atp.circuit_kind == "cut")]
    assert len(top) == 1
    with torch.no_grad():
        node = s.evaluator.lds([universe.masks], "test")[0]
    assert torch.allclose(torch.tensor(top.per_prompt.iloc[0]), node, atol=TOL)


def test_edge_rows_are_sized_in_edges_and_cut_at_the_masks_counts(cells, universe):
    mask, atp, own = cells
    for d in (mask, atp):
        assert set(d.size_unit) == {"edges"}
        sizes = d[d.metric == "size_edges"].value
        assert sizes.max() <= universe.candidates.n_edges() and (sizes >= 0).all()
        assert {"edge_universe_nodes", "edge_universe_edges", "wall_seconds"} <= set(d.metric)
        assert (d.metric == "studied").sum() == 1 and (d.metric == "circuit_edge").any()
    cut = set(atp[(atp.metric == "size_edges") & (atp.circuit_kind == "cut")].value.astype(int))
    assert set(o for o in own if o > 0) <= cut


def test_a_cli_run_of_the_edge_methods_writes_the_edge_verdict(tiny_world_dir, tmp_path):
    from bench.cli.main import main

    argv = ["run", "--methods", "edge_mask,edge_attribution_patching", "--tasks", "ioi", "--seeds", "0,1",
            "--world", str(tiny_world_dir), "--out", str(tmp_path), "--quick", "--no-progress", "--n-train", "16",
            "--n-test", "12", "--edge-max-nodes", "12", "--option", "edge_mask.steps=6", "--option", "edge_mask.n_lambdas=3"]
    assert main(argv) == 0
    df = pd.read_parquet(tmp_path / "results.parquet")
    assert (df.status == "ok").all(), df[df.status != "ok"].error.tolist()
    report = (tmp_path / "report.md").read_text()
    assert "## Edges between latents" in report and "F(edge_mask) − F(other)" in report
    assert "No cell produced circuits" not in report and "## Verdict: paired" not in report  # edges only
    for fig in ("faithfulness_vs_edges.png", "edge_case_study.png"):
        assert (tmp_path / "figures" / fig).stat().st_size > 1000


def test_an_edge_run_with_the_keep_policy_is_refused_before_any_cell(tiny_world_dir, tmp_path, capsys):
    from bench.cli.main import main

    argv = ["run", "--methods", "edge_mask", "--tasks", "ioi", "--seeds", "0", "--world", str(tiny_world_dir),
            "--out", str(tmp_path), "--quick", "--no-progress", "--error-policy", "keep"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "edge methods need one of drop, mean" in err[0]
    assert not (tmp_path / "results.parquet").exists()


def test_case_study_effects_are_edge_atp_and_rows_name_their_ends(setup, universe):
    """The effect drawn for each edge of the all-edges circuit is edge AtP's score on the same prompts
    (the slot order of bench.eval.edges.flat), and each circuit_edge row names its upstream node in
    site/pos/latent and its downstream node in text."""
    from bench.eval.edges import flat
    from bench.run.edge_cell import EFFECT_PROMPTS, edge_context, edge_effects, edge_rows
    from methods.edge_attribution_patching import EdgeAttributionPatching

    s, _ = setup
    cand = universe.candidates
    sd = s.evaluator.splits["train"]
    n = min(EFFECT_PROMPTS, len(sd.data))
    ctx = edge_context(s, cand)
    ctx.train, ctx.replacement = sd.data.subset(list(range(n))), sd.replacement
    atp = EdgeAttributionPatching().discover(ctx)
    effects = edge_effects(s.evaluator, cand)
    want = torch.cat([v.flatten() for v in atp.values] + [atp.to_metric.flatten()])
    assert torch.allclose(effects, want * flat(cand).float(), atol=TOL)
    rows = edge_rows({}, 0, cand, effects)
    assert len(rows) == cand.n_edges()
    index = {(site, *map(int, nd)): i for site in cand.sites for i, nd in enumerate(cand.nodes[site].tolist())}
    for r in rows:  # each row's value is the score of the edge its two named ends define
        a = index[(r["site"], r["pos"], r["latent"])]
        if r["text"] == "metric":
            want = float(atp.to_metric[a])
        else:
            down, pd_, ld_ = r["text"].split("|")
            want = float(atp.values[cand.sites.index(r["site"])][a, index[(down, int(pd_), int(ld_))]])
        assert r["value"] == pytest.approx(want, abs=TOL)


def test_a_site_without_nodes_scores_its_edges_zero_instead_of_failing(setup, universe):
    """A universe with no node at some site (a ranking's small circuit can miss a whole SAE): no path
    uses those edge weights, so they get no gradient; the methods and the case-study effects give 0."""
    from bench.run.edge_cell import edge_context, edge_effects
    from methods.edge_attribution_patching import EdgeAttributionPatching
    from methods.edge_mask import EdgeMask

    s, _ = setup
    masks = dict(universe.masks)
    first = s.ctx.sites[0]
    masks[first] = torch.zeros_like(masks[first])
    cand = EdgeCircuit.from_masks(masks, s.ctx.sites)
    ctx = edge_context(s, cand)
    atp = EdgeAttributionPatching().discover(ctx)
    assert atp.values[0].numel() == 0 and torch.isfinite(atp.to_metric).all()
    assert torch.isfinite(edge_effects(s.evaluator, cand)).all()
    out = EdgeMask(lambdas=(0.0,), steps=3, restarts=1, batch_size=4, judge_prompts=4).discover(ctx)
    assert len(out.circuits) == 1


def test_edge_circuit_is_part_of_the_plugin_api():
    import bench.api as api

    assert api.EdgeCircuit is EdgeCircuit and hasattr(api, "EdgeScores") and hasattr(api, "EdgeMethodContext")


def test_the_plans_count_of_edge_evaluations_bounds_a_real_cells(setup, monkeypatch):
    """``bench plan`` charges each edge cell ``edge_eval_units`` exact evaluations (units of one circuit
    on the test prompts); a real cell of each method, counted at ``edge_logit_diff``, runs no more than
    that and not far less (sizes that coincide are counted once by the cell, twice by the plan)."""
    import bench.run.edge_cell as edge_cell
    from bench.plan.edges import edge_eval_units
    from bench.plan.estimate import Settings
    from bench.run.edge_universe import edge_universe
    from bench.run.setup import build_method

    s, cfg = setup
    cfg = dataclasses.replace(cfg, method_options={"edge_mask": {"steps": 6, "n_lambdas": 3, "batch_size": 4}})
    n_test = len(s.evaluator.splits["test"].data)
    seen = []
    real = edge_cell.edge_logit_diff

    def counted(spliced, data, circuit, replacement, max_rows=1024):
        seen.append(len(data) / n_test)
        return real(spliced, data, circuit, replacement, max_rows)

    monkeypatch.setattr(edge_cell, "edge_logit_diff", counted)
    n_edges = edge_universe(s, cfg).candidates.n_edges()
    st = Settings.defaults(n_train=cfg.n_train, n_test=cfg.n_test, grid_per_decade=cfg.grid_per_decade,
                           n_train_eval=cfg.n_train_eval)
    mask_rows = edge_cell.run_edge_cell(s, build_method("edge_mask", cfg), cfg)
    got = {"edge_mask": sum(seen)}
    own = sorted({int(r["value"]) for r in mask_rows if r["metric"] == "size_edges" and r.get("circuit_kind") == "native"})
    seen.clear()
    edge_cell.run_edge_cell(s, build_method("edge_attribution_patching", cfg), cfg, own)
    got["edge_attribution_patching"] = sum(seen)
    for name, units in got.items():
        planned, _ = edge_eval_units(st, n_edges, name, 3)
        print(name, units, planned)
        assert units <= planned <= 1.6 * units, (name, units, planned)


def test_lambda_chunks_give_the_edge_mask_the_same_updates(setup, universe):
    """``lambda_chunk`` trains the lambdas a chunk at a time (gradients added before one Adam step):
    the same logits as all lambdas in one forward, to float summation, and the same circuits; the
    restarts' judging, chunked, gives the same objectives."""
    from bench.run.edge_cell import edge_context
    from bench.run.setup import build_method

    s, cfg = setup
    ctx = edge_context(s, universe.candidates)
    lams = [1e-3, 1e-2, 1e-1]
    ld_all = torch.linspace(0.5, 1.5, len(ctx.train))
    out = {}
    for chunk in (0, 1, 2):
        m = build_method("edge_mask", dataclasses.replace(cfg, method_options={"edge_mask": {
            "steps": 6, "n_lambdas": 3, "batch_size": 4, "lambda_chunk": chunk}}))
        out[chunk] = m.train(ctx, lams, ld_all, 1)
    for chunk in (1, 2):
        for a, b in zip(out[0], out[chunk]):
            # Adam divides by sqrt(v): float32 summation differences of ~1e-7 stay ~1e-6 in the logits
            assert torch.allclose(a, b, atol=1e-5, rtol=0), (chunk, float((a - b).abs().max()))
            assert torch.equal(a > 0, b > 0)
    # the restarts' judging, chunked the same way: the same objectives and edge counts
    judge = list(range(8))
    objs = {chunk: build_method("edge_mask", dataclasses.replace(cfg, method_options={"edge_mask": {
        "n_lambdas": 3, "lambda_chunk": chunk}})).objectives(ctx, out[0], lams, ld_all, judge) for chunk in (0, 2)}
    assert objs[0][1] == objs[2][1]
    assert objs[0][0] == pytest.approx(objs[2][0], abs=1e-5)
