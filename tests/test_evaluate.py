"""The evaluator, sizes and the cell's steps, each against an independent reference.

References: exact identities of the faithfulness definition (F(full) = 1, F(∅) = 0), hand-built
masks (complement, knockout with p = 0 and p = 1), one-circuit-at-a-time runs for the stacked
evaluation, and hand-made score tables for the cuts.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from bench.api import Circuit, CircuitSet, Scores
from bench.eval.evaluate import HEADLINE, Evaluator, SplitData
from bench.eval.sizes import n_nodes, nearest_sizes, restrict, size_grid, sweep_ranking, top_k_circuit, union
from bench.model.ablation import candidates, make_replacement
from bench.model.masked import masked_logit_diff


def _evaluator(toy) -> Evaluator:
    sp = toy.spliced
    repl_tr = make_replacement("mean", sp, toy.data, toy.data)
    repl_te = make_replacement("mean", sp, toy.test, toy.data)
    universe = union(candidates(sp.latents(toy.data.clean), repl_tr), candidates(sp.latents(toy.test.clean), repl_te))
    return Evaluator(sp, {"train": SplitData(toy.data, repl_tr), "test": SplitData(toy.test, repl_te)}, universe, max_rows=7)


def test_full_circuit_is_one_and_empty_is_zero_exactly(linear):
    ev = _evaluator(linear)
    empty = {s: torch.zeros_like(m) for s, m in ev.universe.items()}
    lds = ev.lds([ev.universe, empty], "test").mean(1).tolist()
    assert ev.faithfulness(lds[0], "test")[HEADLINE] == 1.0
    assert ev.faithfulness(lds[1], "test")[HEADLINE] == 0.0
    assert ev.baselines("test")["m_sae"] != ev.baselines("test")["m_empty"]


@pytest.mark.parametrize("max_rows", [7, 64])
def test_stacked_evaluation_equals_one_circuit_at_a_time(linear, max_rows):
    """Many circuits per forward = separate runs (max_rows 7: prompts split across chunks, one
    circuit each; 64: several circuits share a forward)."""
    ev = _evaluator(linear)
    ev.max_rows = max_rows
    g = torch.Generator().manual_seed(1)
    circuits = [{s: m & (torch.rand(m.shape, generator=g) < p) for s, m in ev.universe.items()} for p in (0.1, 0.5, 0.9)]
    stacked = ev.lds(circuits, "test")
    sd = ev.splits["test"]
    for i, c in enumerate(circuits):
        with torch.no_grad():
            one = masked_logit_diff(linear.spliced, sd.data, c, sd.replacement)
        assert torch.allclose(stacked[i], one.float(), atol=1e-5), i  # fp32 rounding of different batch shapes


def test_complement_ablates_the_circuits_latents_at_every_position(linear):
    ev = _evaluator(linear)
    site = linear.site
    u = ev.universe[site]
    pos, lat = u.nonzero()[0].tolist()
    mask = torch.zeros_like(u)
    mask[pos, lat] = True
    comp = ev.complement(Circuit({site: mask}))[site]
    expected = u.clone()
    expected[:, lat] = False  # the latent goes at every position, not just where the circuit had it
    assert torch.equal(comp, expected)


def test_knockout_limits_are_exact(linear):
    ev = _evaluator(linear)
    site = linear.site
    c = top_k_circuit({site: torch.arange(ev.universe[site].numel(), dtype=torch.float).view_as(ev.universe[site])}, ev.universe, 5)
    f_c = ev.faithfulness(float(ev.lds([c.masks], "test").mean()), "test")[HEADLINE]
    f_comp = ev.faithfulness(float(ev.lds([ev.complement(c)], "test").mean()), "test")[HEADLINE]
    none = ev.knockout(c, 2, seed=0, p=0.0)  # K empty: M \ K = M, C \ K = C
    assert all(fm == pytest.approx(1.0, abs=1e-6) and fc == pytest.approx(f_c, abs=1e-6) for fm, fc in none)
    every = ev.knockout(c, 2, seed=0, p=1.0)  # K = every latent of C: C \ K = ∅, M \ K = the complement
    assert all(fc == pytest.approx(0.0, abs=1e-6) and fm == pytest.approx(f_comp, abs=1e-6) for fm, fc in every)
    # On the first n test prompts the baselines must be those prompts' too: M \ ∅ is exactly 1 and
    # C \ ∅ is C's F recomputed by hand on the same prompts (full-split baselines would miss both).
    n = 3
    lds = ev.lds([c.masks, ev.universe, {s: torch.zeros_like(u) for s, u in ev.universe.items()}], "test")[:, :n].mean(1)
    f_sub = (lds[0] - lds[2]) / (lds[1] - lds[2])
    assert abs(f_sub - f_c) > 1e-3  # the subset differs from the whole split, so the check can fail
    for fm, fc in ev.knockout(c, 2, seed=0, p=0.0, n_prompts=n):
        assert fm == pytest.approx(1.0, abs=1e-6) and fc == pytest.approx(float(f_sub), abs=1e-5)


def test_top_k_ties_nesting_and_universe():
    site = "blocks.0.hook_resid_post"
    universe = {site: torch.tensor([[False, False, False], [True, True, False], [True, True, True]])}
    flat = torch.zeros(3, 3)
    flat[0, 2] = 100.0  # outside the universe: never picked, however large
    flat[2, 2] = -3.0  # |score| ranks, so a negative score counts
    cuts = [top_k_circuit({site: flat}, universe, k).masks[site] for k in range(0, 7)]
    assert [int(c.sum()) for c in cuts] == [0, 1, 2, 3, 4, 5, 5]  # k is capped at the universe
    assert bool(cuts[1][2, 2])
    # the rest are ties at 0: broken by flat index, so (1,0) then (1,1) then (2,0)
    assert bool(cuts[2][1, 0]) and bool(cuts[3][1, 1]) and bool(cuts[4][2, 0])
    for a, b in zip(cuts, cuts[1:]):
        assert bool((a & ~b).sum() == 0)  # nested
    assert not any(bool(c[0, 2]) for c in cuts)


def test_restrict_drops_uncounted_nodes_and_changes_nothing_on_a_single_site_model(linear):
    ev = _evaluator(linear)
    site = linear.site
    everything = torch.ones_like(ev.universe[site])
    c = Circuit({site: everything})
    r = restrict(c, ev.universe)
    assert n_nodes(r.masks) == n_nodes(ev.universe) < everything.numel()
    assert bool((r.masks[site] & ~ev.universe[site]).sum() == 0)
    for split in ("train", "test"):  # nodes outside the universe equal their replacement on every prompt
        a, b = ev.lds([c.masks, r.masks], split)
        assert torch.equal(a, b), split


def test_size_grid_is_shared_across_universe_sizes():
    a, b = size_grid(1234), size_grid(987)
    assert a[:-1] == [v for v in (1, 2, 3, 5, 7, 10, 20, 30, 50, 70, 100, 200, 300, 500, 700, 1000)]
    assert a[-1] == 1234 and b[-1] == 987
    assert set(b[:-1]) <= set(a)
    assert nearest_sizes([10, 100], [8, 40, 90]) == {10: 8, 100: 90}


def test_sweep_ranking_orders_by_survival():
    site = "s"
    big = Circuit({site: torch.tensor([[True, True, True]])})
    small = Circuit({site: torch.tensor([[False, True, False]])})
    mid = Circuit({site: torch.tensor([[False, True, True]])})
    r = sweep_ranking([big, small, mid], [site])[site]
    assert r[0, 1] > r[0, 2] > r[0, 0]


def test_cell_evaluates_every_method_at_the_matched_sizes(tiny_world):
    from bench.run.cell import run_cell
    from bench.run.config import RunConfig
    from bench.run.setup import setup_task
    from methods.attribution_patching import AttributionPatching
    from tasks import SubjectVerbAgreement

    cfg = RunConfig(tasks=("sva",), methods=("attribution_patching",), seeds=(0,), n_train=16, n_test=16, n_knockout=2)
    setup = setup_task(SubjectVerbAgreement(), tiny_world, cfg, seed=0)
    extra = [3, 17, 41]
    rows = run_cell(setup, AttributionPatching(), cfg, extra)
    sizes = {int(r["value"]) for r in rows if r["metric"] == "size_nodes"}
    assert set(extra) <= sizes and set(size_grid(setup.n_universe)) <= sizes
    # every circuit's kept nodes are counted: its site counts add up to its size, nothing outside the universe
    by_circuit: dict[int, dict] = {}
    for r in rows:
        if r["metric"] in ("size_nodes", "site_nodes"):
            by_circuit.setdefault(r["circuit"], {}).setdefault(r["metric"], []).append(r["value"])
    for i, d in by_circuit.items():
        assert sum(d["site_nodes"]) == d["size_nodes"][0], i
    for r in rows:
        if r["metric"] == "circuit_node":
            assert bool(setup.universe[r["site"]][r["pos"], r["latent"]])
    # the matched headline sizes come from the extra sizes, and train F is reported next to test F
    matched = {r["k"] for r in rows if r["metric"] == "matched_size"}
    assert matched <= set(extra)
    assert {r["split"] for r in rows if r["metric"] == HEADLINE} == {"train", "test"}


def test_circuits_method_is_also_cut_as_a_ranking(tiny_world):
    from bench.run.cell import circuits_at_sizes, native_sizes

    site_shapes = {s: (6, tiny_world.spliced.d_sae(s)) for s in tiny_world.spliced.sites}
    universe = {s: torch.ones(shape, dtype=torch.bool) for s, shape in site_shapes.items()}
    universe = {s: u.index_fill(0, torch.tensor([0]), False) for s, u in universe.items()}
    g = torch.Generator().manual_seed(0)
    cs = CircuitSet([Circuit({s: torch.rand(shape, generator=g) < p for s, shape in site_shapes.items()}) for p in (0.01, 0.1)])
    out = circuits_at_sizes(cs, universe, [4, 9])
    kinds = [k for _, k in out]
    assert kinds == ["native", "native", "cut", "cut"]
    assert [c.n_nodes() for c, _ in out[2:]] == [4, 9]
    assert native_sizes(cs, universe) == sorted({c.n_nodes() for c, k in out if k == "native"})
    assert native_sizes(Scores({}), universe) == []


def test_nestedness_node_and_latent_levels_by_hand():
    from bench.run.cell import nestedness

    s = "s"
    a = Circuit({s: torch.tensor([[True, False, False, False], [False, True, False, False]])})  # latents {0, 1}
    b = Circuit({s: torch.tensor([[True, False, True, False], [False, False, False, False]])})  # latents {0, 2}
    c = Circuit({s: torch.tensor([[True, True, True, True], [False, False, False, False]])})  # latents {0..3}
    rows = {(r["circuit"], r["metric"]): r["value"] for r in nestedness([c, a, b])}
    # sizes: a 2, b 2, c 4 -> order a, b, c (stable); a vs next (b): 1 of 2 nodes; latents of a in b: 1/2, in c: 2/2
    assert rows[(1, "nestedness_node_next")] == 0.5
    assert rows[(1, "nestedness_latent_min")] == 0.5 and rows[(1, "nestedness_latent_mean")] == 0.75
    assert rows[(2, "nestedness_node_next")] == 1.0 and rows[(2, "nestedness_latent_min")] == 1.0
    assert (0, "nestedness_node_next") not in rows  # the largest circuit has nothing to be nested in


def test_studied_circuit_is_chosen_on_train_not_test():
    from bench.run.cell import Evaluated, studied_index

    def ev(size, f_train, f_test):
        forms = {"train": {HEADLINE: f_train}, "test": {HEADLINE: f_test}}
        return Evaluated(Circuit({}), "cut", size, size, torch.zeros(1), torch.zeros(1), 0.0, forms)

    evals = [ev(5, 0.5, 0.99), ev(10, 0.95, 0.6), ev(20, 0.97, 0.97)]
    assert studied_index(evals) == 1  # smallest with F_train >= 0.9, although its test F is the worst
    assert studied_index([ev(5, 0.3, 0.99), ev(9, 0.6, 0.1)]) == 1  # none reaches 0.9: most faithful on train


def test_plan_sizes_matches_targets_to_the_masks_sizes():
    from bench.run.cell import plan_sizes

    sizes, grid, headline = plan_sizes(500, 5, [4, 33, 120, 900], (10, 30, 100, 300))
    assert 900 not in sizes and {4, 33, 120} <= set(sizes) and set(grid) <= set(sizes)
    assert headline == {10: 4, 30: 33, 100: 120, 300: 120}  # nearest in log size among the mask's own sizes ≤ N
    _, _, alone = plan_sizes(500, 5, [], (10, 300))
    assert alone == {10: 10, 300: 300}  # no circuits-method: the grid


def _evaluated(size, kind="cut", f_train=0.5, f_test=0.5, masks=None, comp=None):
    from bench.eval.evaluate import F_FORMS
    from bench.run.cell import Evaluated

    forms = {split: {name: f for name in F_FORMS} for split, f in (("train", f_train), ("test", f_test))}
    comp = torch.full((2,), float("nan")) if comp is None else comp
    return Evaluated(Circuit(masks or {}, {"lambda": 0.1}), kind, size, size, torch.tensor([1.0, 3.0]), comp, 2.5, forms)


def test_headline_indices_pick_the_circuit_of_the_matched_size_and_kind():
    from bench.run.cell import headline_indices

    evals = [_evaluated(4, "cut"), _evaluated(4, "native"), _evaluated(33, "native"), _evaluated(33, "cut")]
    assert headline_indices(evals, {10: 4, 30: 33}, native=True) == {10: 1, 30: 2}  # the mask: its own circuits
    assert headline_indices(evals, {10: 4, 30: 33}, native=False) == {10: 0, 30: 3}  # a ranking: its cuts
    assert headline_indices(evals, {100: 120}, native=True) == {}  # a size it never evaluated: no headline


def test_circuit_rows_carry_sizes_per_site_counts_per_prompt_values_and_every_form():
    from bench.eval.evaluate import F_FORMS
    from bench.run.cell import circuit_rows

    site = "blocks.0.hook_resid_post"
    mask = torch.tensor([[True, False, True], [True, False, False]])  # 3 nodes, 2 distinct latents
    rows = circuit_rows([_evaluated(3, masks={site: mask}, f_train=0.8, f_test=0.7),
                         _evaluated(3, masks={site: mask}, comp=torch.tensor([0.5, 1.5]))], [site])
    by = {(r["circuit"], r["split"], r["metric"]): r for r in rows}
    assert by[(0, "test", "site_nodes")]["value"] == 3 and by[(0, "test", "site_latents")]["value"] == 2
    assert by[(0, "test", "logit_diff")]["per_prompt"] == [1.0, 3.0] and by[(0, "test", "logit_diff")]["value"] == 2.0
    assert by[(0, "train", "logit_diff")]["value"] == 2.5 and "per_prompt" not in by[(0, "train", "logit_diff")]
    assert (0, "test", "complement_logit_diff") not in by  # not measured: no row, never a NaN row
    assert by[(1, "test", "complement_logit_diff")]["value"] == 1.0
    assert all(by[(0, "train", f)]["value"] == 0.8 and by[(0, "test", f)]["value"] == 0.7 for f in F_FORMS)
    assert json.loads(by[(0, "test", "size_nodes")]["circuit_params"]) == {"lambda": 0.1}


def test_validate_output_names_each_malformed_output(linear):
    from bench.errors import MethodFailure
    from bench.run.cell import validate_output
    from tests.test_architectures import _context

    ctx = _context(linear.spliced, linear.data)
    site = ctx.sites[0]
    shape = (ctx.train.n_pos, ctx.spliced.d_sae(site))
    validate_output(Scores({site: torch.zeros(shape)}), ctx, "m")  # well-formed: no error
    bad = {
        "missing sites": Scores({}),
        "have shape (1, 1)": Scores({site: torch.zeros(1, 1)}),
        "NaN or inf": Scores({site: torch.full(shape, float("nan"))}),
        "returned no circuits": CircuitSet([]),
        "not a bool tensor": CircuitSet([Circuit({site: torch.zeros(shape)})]),
        "expected Scores or CircuitSet": [1, 2],
    }
    for reason, out in bad.items():
        with pytest.raises(MethodFailure, match=re.escape(reason)) as e:
            validate_output(out, ctx, "m")
        assert str(e.value).startswith("m: ") and "\n" not in str(e.value)


def test_evaluate_circuits_matches_the_evaluator_and_measures_complements_only_where_asked(linear):
    from bench.run.cell import evaluate_circuits

    ev = _evaluator(linear)
    site = linear.site
    c = top_k_circuit({site: torch.arange(ev.universe[site].numel(), dtype=torch.float).view_as(ev.universe[site])}, ev.universe, 3)
    out = evaluate_circuits(ev, [(c, "cut"), (Circuit(ev.universe), "native")], [False, True])
    assert torch.isnan(out[0].complement_ld).all() and not torch.isnan(out[1].complement_ld).any()
    by_hand = ev.lds([c.masks], "test")[0]
    assert torch.equal(out[0].test_ld, by_hand)
    assert out[0].forms["test"][HEADLINE] == pytest.approx(ev.faithfulness(float(by_hand.mean()), "test")[HEADLINE])
    assert out[0].train_ld_mean == pytest.approx(float(ev.lds([c.masks], "train").mean()))
    assert out[1].forms["test"][HEADLINE] == pytest.approx(1.0) and out[0].size_nodes == 3 and out[1].kind == "native"
