"""``bench plan`` for the edge methods (docs/edges.md): each one's own code run on the meta device, as
for the node methods (:mod:`bench.plan.estimate`).

A run's edge universe (:mod:`bench.run.edge_universe`) is a node circuit known only after a node
method ran on real prompts, so the plan assumes one: ``edge_max_nodes`` nodes (the run's cap, 48 by
default, which real universes reach on three of the four embedded tasks) split evenly over the sites,
each node at its own position counting back from the last (so every downstream node has its own
in-edge set: the most segment forwards the exact evaluator can need). What scales: a step of either
method runs one segment forward per downstream node and prompt (and lambda, for the mask), so rows,
memory and FLOPs grow with the nodes of the busiest downstream site; a universe with all its nodes
on one later site needs up to ``len(sites)`` times the plan's segment rows. Said in each row's notes.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from bench.plan.simulate import simulate

EDGE_MODELLED = ("edge_mask", "edge_attribution_patching")


def universe(sp, n_nodes: int, seq_len: int):
    """The assumed edge universe: ``n_nodes`` nodes split evenly over ``sp``'s sites (the first sites
    take the remainder), node j of a site at position ``seq_len - 1 - j`` (wrapping above BOS) and
    latent j; every candidate edge kept."""
    from bench.api import EdgeCircuit, candidate_edges

    sites = list(sp.sites)
    per = [n_nodes // len(sites) + (i < n_nodes % len(sites)) for i in range(len(sites))]
    nodes = {}
    for s, k in zip(sites, per):
        pos = [seq_len - 1 - (j % max(1, seq_len - 1)) for j in range(k)]
        nodes[s] = torch.tensor([[p, j % sp.d_sae(s)] for j, p in enumerate(pos)], dtype=torch.long).view(-1, 2)
    edges = [candidate_edges(nodes[a], nodes[b]) for a, b in zip(sites, sites[1:])]
    return EdgeCircuit(sites, nodes, edges, torch.ones(len(nodes[sites[-1]]), dtype=torch.bool))


def edge_context(sp, st, n: int):
    """An edge-method context on ``n`` stand-in train prompts over the assumed universe."""
    from bench.api import EdgeMethodContext
    from bench.plan.contexts import make_context

    c = make_context(sp, st, n)
    return EdgeMethodContext(c.spliced, c.train, c.replacement, c.candidates, seed=0,
                             edge_candidates=universe(sp, st.edge_max_nodes, st.seq_len))


def _busiest(cand) -> int:
    """Nodes of the busiest downstream site: the segment rows per prompt (and lambda)."""
    return max((len(cand.nodes[s]) for s in cand.sites[1:]), default=0)


def simulate_edge_method(sp, st, name: str, method, cfg, n: int, full: bool = True):
    """(Sim, info) of one edge method's dominant computation, FLOPs scaled to the run's settings;
    the same contract as :func:`bench.plan.estimate._simulate_method`."""
    if name == "edge_attribution_patching":
        bs = min(cfg.batch_size, n)
        ctx = edge_context(sp, st, bs)
        sim = simulate(sp, lambda: method.discover(ctx), flops=full)
        down = _busiest(ctx.edge_candidates)
        return sim, {"rows": down * bs, "grad": True, "flops": lambda s: s.flops * math.ceil(n / bs),
                     "notes": _universe_note(ctx.edge_candidates) + f"; one backward per {bs} prompts"}
    if name == "edge_mask":
        b = min(cfg.batch_size, n)
        ctx = edge_context(sp, st, b)
        cand = ctx.edge_candidates
        L = len(cfg.lambdas) or cfg.n_lambdas
        lams = [1e-3] * L  # the values do not change the computation
        ld = torch.zeros(b, device=sp.device)
        pinned = type(method)(dataclasses.replace(cfg, steps=2))  # two steps: Adam's state exists from the first
        n_sim = round(1.1 * 2)
        sim = simulate(sp, lambda: pinned.train(ctx, lams, ld, 0), flops=full)
        chunk = cfg.lambda_chunk or L  # lambdas per forward, in training and in judging
        binar = [torch.ones((chunk, *e.shape), device=sp.device) for e in [*cand.edges, cand.to_metric]]
        judge = min(cfg.judge_prompts, n)
        m = min(16, judge)  # the restarts' judging: binarised edges, no gradient, 16 prompts per call (EdgeMask.objectives)
        jctx = edge_context(sp, st, m)
        obj = simulate(sp, torch.no_grad()(lambda: pinned._ld(jctx, binar, torch.arange(m))), flops=full)
        rest = L % chunk  # the last, smaller chunk of lambdas (its own call: FLOPs not proportional to its size)
        obj_rest = simulate(sp, torch.no_grad()(lambda: pinned._ld(jctx, [x[:rest] for x in binar], torch.arange(m))),
                            flops=True) if rest and full else None
        f = min(64, n)  # LD_ref of every train prompt, 64 per forward (EdgeMask.discover)
        fctx = edge_context(sp, st, f)
        fwd = simulate(sp, torch.no_grad()(lambda: sp.run(fctx.train.clean)), flops=full)
        # each part at its own rows: (simulation, rows per segment forward, where); ties: training
        parts = [(sim, chunk * _busiest(cand) * b, "training"), (obj, chunk * _busiest(cand) * m, "judging"),
                 (fwd, f, "LD_ref")]
        peak, rows, where = max(parts, key=lambda p: p[0].peak)
        steps = round(1.1 * cfg.steps) * cfg.restarts

        def flops(_s):  # the steps, the restarts' judging, and LD_ref of every train prompt (one forward)
            judging = obj.flops * (L // chunk) + (obj_rest.flops if obj_rest else 0.0)  # all lambdas, m prompts
            return sim.flops / n_sim * steps + judging / m * judge * cfg.restarts + fwd.flops / f * n

        notes = (_universe_note(cand) + f"; {L} lambdas x {cfg.restarts} restarts x {round(1.1 * cfg.steps)} steps of "
                 f"{b} prompts, " + ("all lambdas in one forward" if chunk == L else f"{chunk} lambdas per forward"))
        return peak, {"rows": rows, "grad": peak is sim, "flops": flops, "notes": notes + f"; peak in {where}"}
    raise KeyError(name)


def _universe_note(cand) -> str:
    per = "/".join(str(len(cand.nodes[s])) for s in cand.sites)
    return (f"assumed universe: {sum(len(v) for v in cand.nodes.values())} nodes ({per} per site), "
            f"{cand.n_edges()} candidate edges; segment rows scale with the busiest site's nodes")


def edge_evaluator_fn(sp, st):
    """The exact edge evaluator (:func:`bench.eval.edges.edge_logit_diff`) on the assumed universe with
    every edge kept and ``n_test`` prompts, as a function to simulate; its rows per segment forward
    and the universe's candidate edges."""
    from bench.eval.edges import edge_logit_diff_on_device

    ctx = edge_context(sp, st, st.n_test)

    def fn():
        return edge_logit_diff_on_device(sp, ctx.train, ctx.edge_candidates, ctx.replacement, st.max_rows)

    rows = min(max(st.max_rows, st.n_test), st.n_test * _busiest(ctx.edge_candidates))
    return fn, rows, ctx.edge_candidates.n_edges()


def edge_eval_units(st, n_edges: int, name: str, n_lambdas: int) -> tuple[float, float]:
    """(exact evaluations, edge-effect passes) of one edge-method cell (:func:`bench.run.edge_cell.run_edge_cell`)
    in units of one circuit on the test prompts; an upper bound where sizes coincide.

    The cell evaluates the mask's own circuits (``n_lambdas``; a ranking is cut at the mask's counts
    too) and the shared grid over the candidate edges, each on test and on the evaluator's train
    prompts; the complements of the grid, headline and own circuits on test; and for a signed
    ranking the cut-rule search (both rules over the grid, on train). Then one soft forward and
    backward (about three forwards) on ``EFFECT_PROMPTS`` train prompts per headline and studied
    circuit, for the edge effects. ``tests/test_edge_methods.py`` counts a real cell's."""
    from bench.eval.sizes import size_grid
    from bench.run.edge_cell import EDGE_TARGETS, EFFECT_PROMPTS

    grid = len(size_grid(max(2, n_edges), st.grid_per_decade))
    own = n_lambdas if name == "edge_mask" else 0
    sizes = grid + n_lambdas
    r = min(st.n_train_eval, st.n_train) / max(1, st.n_test)  # train prompts evaluated, per test prompt
    exact = (own + sizes) * (1 + r) + own + grid + len(EDGE_TARGETS)
    if name != "edge_mask":
        exact += 2 * grid * r
    return exact, (len(EDGE_TARGETS) + 1) * 3 * min(EFFECT_PROMPTS, st.n_train) / max(1, st.n_test)
