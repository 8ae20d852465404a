"""The edge universe of a task and seed: the node circuit whose nodes every edge method connects.

Edges run between the nodes of one node circuit (``bench.api.EdgeCircuit``); which node circuit
decides how many candidate edges there are and what F keeping all of them reaches, so it is chosen
the same way for every edge method, from the train split only, before any edge method runs:

1. the ranking of the node method ``cfg.edge_node_method`` (default ``integrated_gradients``: a
   few dozen backward passes, so the universe is cheap and exists in a run of edge methods alone;
   attribution patching was the first default, but with the error term dropped every SAE is a
   bottleneck and AtP's small SVA circuits miss a whole site, F ≈ 0, which leaves an edge universe
   with nothing to connect; a circuits-method such as ``binary_mask`` is read as a ranking, as for
   the node verdict);
2. cut by the rule chosen on train (:func:`bench.run.cell.choose_cut_rule`);
3. at the smallest shared-grid size whose train F reaches :data:`NODE_F` (0.9), at most
   ``cfg.edge_max_nodes`` nodes (default 48: an edge mask's step runs one segment forward per
   downstream node, prompt and lambda, so the cap bounds its cost); where no grid size under the cap
   reaches 0.9, the cap itself. Its train F is in the rows (``edge_universe_train_F``): an
   edge circuit cannot be more faithful than its node circuit (keeping every edge *is* that node
   circuit).

What it cost is recorded (``edge_universe_seconds``) and charged to no edge method: each edge method's
own cost rows start after it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from bench.api import CircuitSet, EdgeCircuit
from bench.errors import MethodFailure
from bench.eval.evaluate import HEADLINE
from bench.eval.sizes import size_grid, sweep_ranking, top_k_circuit
from bench.run.config import RunConfig

NODE_F = 0.9  # the edge universe's node circuit: the smallest grid size reaching this train F


@dataclass
class EdgeUniverse:
    """The node circuit (bool masks), its nodes and candidate edges, and how it was chosen."""

    masks: dict[str, torch.Tensor]
    candidates: EdgeCircuit
    source: str
    cut_rule: str
    train_F: float
    seconds: float

    @property
    def n_nodes(self) -> int:
        return int(sum(len(v) for v in self.candidates.nodes.values()))

    def fingerprint(self) -> str:
        """A hash of the universe's nodes (sites, positions, latents): equal in every edge cell of a task
        and seed, which the edge verdict checks (bench.eval.verdict.edge_universe_table)."""
        import hashlib

        h = hashlib.sha256()
        for s in self.candidates.sites:
            h.update(s.encode())
            h.update(self.candidates.nodes[s].to(torch.int64).numpy().tobytes())
        return h.hexdigest()[:16]

    def rows(self) -> list[dict]:
        """Rows every edge cell carries (the same in each: they describe the shared universe)."""
        text = f"{self.source}, cut {self.cut_rule}"
        return [dict(metric="edge_universe_nodes", value=float(self.n_nodes), text=text),
                dict(metric="edge_universe_fingerprint", value=float("nan"), text=self.fingerprint()),
                dict(metric="edge_universe_edges", value=float(self.candidates.n_edges()), text=text),
                dict(split="train", metric="edge_universe_train_F", value=self.train_F, text=text),
                dict(metric="edge_universe_seconds", value=self.seconds, text=text)]


def edge_universe(setup, cfg: RunConfig) -> EdgeUniverse:
    """The edge universe of ``setup`` (a :class:`bench.run.setup.TaskSetup`), computed once per setup."""
    cache = setup.__dict__.setdefault("_edge_universes", {})
    key = (cfg.edge_node_method, cfg.edge_max_nodes, cfg.grid_per_decade)
    if key not in cache:
        cache[key] = _build(setup, cfg)
    return cache[key]


def _build(setup, cfg: RunConfig) -> EdgeUniverse:
    from bench.run.cell import choose_cut_rule
    from bench.run.setup import build_method

    t0 = time.perf_counter()
    method = build_method(cfg.edge_node_method, cfg)
    if method.unit != "nodes":
        raise MethodFailure(f"edge universe: {cfg.edge_node_method!r} is not a node method")
    ev, ctx = setup.evaluator, setup.ctx
    torch.manual_seed(setup.seed)
    ctx.clear_cache()
    out = method.discover(ctx)
    ranking = sweep_ranking(out.circuits, list(setup.universe)) if isinstance(out, CircuitSet) else out.values
    grid = size_grid(setup.n_universe, cfg.grid_per_decade)
    rule, _ = choose_cut_rule(ev, out, setup.universe, grid)
    cap = min(cfg.edge_max_nodes, setup.n_universe)
    sizes = sorted({k for k in grid if 2 <= k < cap} | {cap})  # the grid below the cap, and the cap itself
    circuits = [top_k_circuit(ranking, setup.universe, k, rule) for k in sizes]
    train = ev.lds([c.masks for c in circuits], "train").mean(1)
    f = [ev.faithfulness(float(v), "train")[HEADLINE] for v in train]
    i = next((j for j, v in enumerate(f) if v >= NODE_F), len(sizes) - 1)
    masks = circuits[i].masks
    cand = EdgeCircuit.from_masks(masks, list(ctx.sites), keep_all=True)
    cand.params = {"edge_universe": cfg.edge_node_method, "k_nodes": sizes[i], "cut_rule": rule}
    return EdgeUniverse(masks, cand, cfg.edge_node_method, rule, float(f[i]), time.perf_counter() - t0)
