"""Edge circuits (bench.eval.edges) against an independent brute force on the tiny world.

The brute force recomputes every downstream node from its own masked upstream residual, one node at a
time, through ``SplicedModel.run_from`` with the upstream site's latents edited and the downstream
site's latents captured (the spliced model's own hooks, not the edge evaluator's segment forward).
Tolerance 1e-4 on logit differences of order 1: the two paths batch different rows, so float32
matmuls may round differently, but no approximation is involved.
"""

from __future__ import annotations

import pytest
import torch

from bench.eval.edges import EdgeCircuit, candidate_edges, edge_logit_diff
from bench.model.ablation import candidates, make_replacement
from bench.model.masked import masked_logit_diff

TOL = 1e-4


@pytest.fixture(scope="module")
def setting(tiny_world):
    from bench.data import split_train_test, tokenize_records
    from tasks import IndirectObjectIdentification

    data = tokenize_records(IndirectObjectIdentification().records(24, 0), tiny_world.tokenizer, "ioi", "1", "ioi")
    train, _ = split_train_test(data, 8, 4, 0)
    sp = tiny_world.spliced
    repl = make_replacement("mean", sp, train, train)
    lat = sp.latents(train.clean)
    cands = candidates(lat, repl)
    # a node circuit per site: the 4 nodes that move furthest from their replacement (mean |f - r|)
    # at the last position (the one the metric reads) and the 4 furthest elsewhere, so that removing
    # edges between them changes the metric (the tests check it does)
    masks = {}
    for s, c in cands.items():
        move = (lat[s] - repl.values[s]).abs().mean(0) * c
        m = torch.zeros_like(c)
        m[-1, move[-1].topk(4).indices] = True
        rest = move[:-1].flatten().topk(4).indices
        m[:-1].view(-1)[rest] = True
        masks[s] = m
    return sp, train, repl, masks


def brute_force(sp, data, circuit: EdgeCircuit, repl) -> torch.Tensor:
    """The module docstring's semantics, one downstream node at a time."""
    n = len(data)
    r = repl.rows(0, n)
    inputs = sp.site_inputs(data.clean)
    sites = circuit.sites

    def ablated(s):
        v = r[s]
        return (v.expand(n, -1, -1) if v.dim() == 2 else v).clone()

    f = ablated(sites[0])
    clean = sp.encode(sites[0], inputs[sites[0]])
    for p, lat in circuit.nodes[sites[0]].tolist():
        f[:, p, lat] = clean[:, p, lat]
    for i in range(1, len(sites)):
        up, down = sites[i - 1], sites[i]
        nxt = ablated(down)
        for j, (p, lat) in enumerate(circuit.nodes[down].tolist()):
            keep = ablated(up)
            for k, (pu, lu) in enumerate(circuit.nodes[up].tolist()):
                if circuit.edges[i - 1][k, j]:
                    keep[:, pu, lu] = f[:, pu, lu]
            cap: dict[str, torch.Tensor] = {}
            sp.run_from(up, inputs[up], {up: lambda _f, v=keep: v}, capture=cap, latents=keep)
            nxt[:, p, lat] = cap[down][:, p, lat]
        f = nxt
    last = sites[-1]
    final = ablated(last)
    for k, (p, lat) in enumerate(circuit.nodes[last].tolist()):
        if circuit.to_metric[k]:
            final[:, p, lat] = f[:, p, lat]
    from bench.data import logit_diff

    logits = sp.run_from(last, inputs[last], {last: lambda _f, v=final: v}, latents=final)
    return logit_diff(logits, data.clean_answer, data.patch_answer).float()


def test_every_edge_kept_is_the_node_circuit(setting):
    sp, data, repl, masks = setting
    full = EdgeCircuit.from_masks(masks, sp.sites, keep_all=True)
    with torch.no_grad():
        node = masked_logit_diff(sp, data, masks, repl).float()
    assert torch.allclose(edge_logit_diff(sp, data, full, repl), node, atol=TOL)


def test_random_edge_circuits_equal_the_brute_force(setting):
    sp, data, repl, masks = setting
    full = EdgeCircuit.from_masks(masks, sp.sites, keep_all=True)
    g = torch.Generator().manual_seed(1)
    for trial in range(3):
        edges = [e & (torch.rand(e.shape, generator=g) < 0.5) for e in full.edges]
        out = full.to_metric & (torch.rand(full.to_metric.shape, generator=g) < 0.7)
        c = EdgeCircuit(full.sites, full.nodes, edges, out)
        with torch.no_grad():
            want = brute_force(sp, data, c, repl)
        got = edge_logit_diff(sp, data, c, repl, max_rows=16)
        assert torch.allclose(got, want, atol=TOL), trial
        # the test has power: dropping these edges moves the metric far beyond the tolerance
        assert (got - edge_logit_diff(sp, data, full, repl)).abs().max() > 10 * TOL, trial


def test_no_edge_kept_gives_the_all_ablated_value(setting):
    """With no edge, every later-site node sees an all-ablated upstream and the metric sees an
    all-ablated last site: the value of the model with every latent of the last site ablated."""
    sp, data, repl, masks = setting
    none = EdgeCircuit.from_masks(masks, sp.sites, keep_all=False)
    assert none.n_edges() == 0
    empty = {s: torch.zeros_like(m) for s, m in masks.items()}
    with torch.no_grad():
        want = masked_logit_diff(sp, data, empty, repl).float()
    assert torch.allclose(edge_logit_diff(sp, data, none, repl), want, atol=TOL)


def test_candidate_edges_only_look_back():
    up = torch.tensor([[1, 0], [3, 5], [2, 2]])
    down = torch.tensor([[2, 7], [3, 1]])
    assert candidate_edges(up, down).tolist() == [[True, True], [False, True], [True, True]]


def test_soft_edges_at_zero_one_weights_equal_the_exact_evaluator(setting):
    from bench.eval.edges import soft_edge_logit_diff

    sp, data, repl, masks = setting
    full = EdgeCircuit.from_masks(masks, sp.sites, keep_all=True)
    g = torch.Generator().manual_seed(2)
    edges = [e & (torch.rand(e.shape, generator=g) < 0.5) for e in full.edges]
    out = full.to_metric & (torch.rand(full.to_metric.shape, generator=g) < 0.7)
    c = EdgeCircuit(full.sites, full.nodes, edges, out)
    with torch.no_grad():
        soft = soft_edge_logit_diff(sp, data, c.nodes, [e.float() for e in edges], c.to_metric.float(), repl).float()
    exact = edge_logit_diff(sp, data, c, repl)
    assert torch.allclose(soft, exact, atol=TOL)
    assert (exact - edge_logit_diff(sp, data, full, repl)).abs().max() > 10 * TOL  # power, as above


def test_the_soft_gradient_is_the_linear_edge_effect(setting):
    """d mean LD / d w(u -> d) at w = 1 equals a central finite difference along that one weight
    (float64 would be exact to ~1e-10; in float32 a step of 1e-2 on a smooth path is within 2e-2 relative)."""
    from bench.eval.edges import soft_edge_logit_diff

    sp, data, repl, masks = setting
    full = EdgeCircuit.from_masks(masks, sp.sites, keep_all=True)
    w = [e.float().requires_grad_(True) for e in full.edges]
    out = full.to_metric.float()
    soft_edge_logit_diff(sp, data, full.nodes, w, out, repl).mean().backward()
    e0 = full.edges[0].nonzero()[0].tolist()
    h = 1e-2

    def at(delta):
        ww = [x.detach().clone() for x in w]
        ww[0][e0[0], e0[1]] += delta
        with torch.no_grad():
            return float(soft_edge_logit_diff(sp, data, full.nodes, ww, out, repl).mean())

    fd = (at(h) - at(-h)) / (2 * h)
    assert w[0].grad[e0[0], e0[1]].item() == pytest.approx(fd, rel=2e-2, abs=1e-4)


def test_the_keep_error_policy_is_refused_in_one_line(setting):
    from bench.errors import UsageError

    sp, data, repl, masks = setting
    full = EdgeCircuit.from_masks(masks, sp.sites, keep_all=True)
    with pytest.raises(UsageError, match="error policy 'keep' is not supported"):
        edge_logit_diff(sp.with_policy("keep"), data, full, repl)
