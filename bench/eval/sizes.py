"""Circuit sizes: the node universe, the shared size grid, and cutting rankings at a size.

**Nodes and the universe.** A node is ``(site, position, latent)``. The *universe* of a task is
the set of nodes whose clean value differs from its replacement on at least one benchmark prompt
(train or test) of the unedited spliced model; BOS is never a node. Every circuit is intersected
with the universe before it is evaluated and sizes count universe nodes only, so no circuit keeps
an uncounted node. Dropping a node outside the universe is exact on the unedited model (its value
already equals the replacement on every prompt); under a multi-site edit an upstream ablation can
switch a downstream latent on, and then it is ablated like every other node outside the circuit.

Methods never see test data: their ``ctx.candidates`` are the train-split nodes. The universe only
adds nodes that are active on test prompts but never on train ones; gradient scores are exactly 0
there, so rankers place them last.

**Matched sizes.** Every method is evaluated at the same sizes: a log-spaced grid from 1 to the
universe, plus every size a circuits-method (the learned mask) produced on the same task and
seed. A circuits-method is also read as a ranking (:func:`sweep_ranking`) and cut at the grid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from bench.api import Circuit


def union(*node_sets: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Site-wise OR of bool node masks ``[pos, d_sae]``."""
    out: dict[str, torch.Tensor] = {}
    for ns in node_sets:
        for s, m in ns.items():
            out[s] = out[s] | m.cpu() if s in out else m.cpu().clone()
    return out


def n_nodes(nodes: Mapping[str, torch.Tensor]) -> int:
    return int(sum(int(m.sum()) for m in nodes.values()))


MANTISSAS = {3: (1, 2, 5), 5: (1, 2, 3, 5, 7), 10: (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8)}


def size_grid(n_universe: int, per_decade: int = 5) -> list[int]:
    """Log-spaced circuit sizes (nodes) from 1 to the whole universe, at fixed "nice" values.

    The values do not depend on the universe's size (1, 2, 3, 5, 7, 10, 20, ... for 5 per decade),
    so different seeds of a task share every grid size below their universes, and intervals over
    seeds are taken at exactly the same sizes. The universe's own size closes the grid.
    """
    if n_universe <= 0:
        return []
    if per_decade not in MANTISSAS:
        raise ValueError(f"grid points per decade must be one of {sorted(MANTISSAS)}, got {per_decade}")
    out, scale = set(), 1
    while scale < n_universe:
        out |= {int(round(m * scale)) for m in MANTISSAS[per_decade] if m * scale < n_universe}
        scale *= 10
    return sorted(out | {n_universe})


def restrict(circuit: Circuit, universe: Mapping[str, torch.Tensor]) -> Circuit:
    """The circuit's nodes inside the universe (CPU bool masks); params, scores and trace kept."""
    masks = {s: circuit.masks[s].detach().cpu().to(torch.bool) & universe[s] for s in universe}
    return Circuit(masks, dict(circuit.params), circuit.scores, circuit.trace)


# How a ranking is cut. "abs": the largest |score| first (nodes that matter either way);
# "positive": the largest signed score first (nodes that support the clean answer, then the inert
# ones, those that work against it last). Users of attribution scores apply both; the harness
# chooses per task and seed on the train split (bench.run.cell.choose_cut_rule).
CUT_RULES = ("abs", "positive")


def top_k_circuit(scores: Mapping[str, torch.Tensor], universe: Mapping[str, torch.Tensor], k: int,
                  rule: str = "abs") -> Circuit:
    """The ``k`` universe nodes ranked first by ``rule`` (:data:`CUT_RULES`); ties broken by site
    order, then flat index.

    A stable sort makes the cut deterministic, and the circuit of size k is contained in the one
    of size k + 1 (rankings give nested circuits).
    """
    if rule not in CUT_RULES:
        raise ValueError(f"cut rule must be one of {CUT_RULES}, got {rule!r}")
    sites = list(universe)

    def key(v: torch.Tensor) -> torch.Tensor:
        return v.abs() if rule == "abs" else v

    vals = torch.cat([key(scores[s].detach().cpu().float()).flatten().masked_fill(~universe[s].flatten(), -math.inf)
                      for s in sites])
    k = max(0, min(int(k), n_nodes(universe)))
    keep = torch.zeros(len(vals), dtype=torch.bool)
    keep[torch.sort(vals, descending=True, stable=True).indices[:k]] = True
    parts = keep.split([universe[s].numel() for s in sites])
    return Circuit({s: part.view(universe[s].shape) & universe[s] for s, part in zip(sites, parts)}, {"k": k, "cut_rule": rule})


def sweep_ranking(circuits: Sequence[Circuit], sites: Sequence[str]) -> dict[str, torch.Tensor]:
    """Read a sweep of circuits (e.g. one mask per lambda) as one ranking of nodes.

    A node's score is the number of the sweep's circuits that keep it, plus a tie-break in
    [0, 0.5) from its mean mask logit when the circuits carry ``scores``: nodes that survive the
    strongest sparsity rank first, so cutting at k gives a nested family of circuits.
    """
    out = {}
    for s in sites:
        count = torch.stack([c.masks[s].detach().cpu().float() for c in circuits]).sum(0)
        if all(c.scores is not None and s in c.scores for c in circuits):
            mean_logit = torch.stack([c.scores[s].detach().cpu().float().expand_as(c.masks[s]) for c in circuits]).mean(0)
            count = count + 0.5 * torch.sigmoid(mean_logit) * (1 - 1e-6)
        out[s] = count
    return out


def nearest_sizes(targets: Sequence[int], available: Sequence[int]) -> dict[int, int]:
    """For each target size, the available size nearest in log scale (``{target: size}``)."""
    avail = sorted({int(a) for a in available if a > 0})
    if not avail:
        return {}
    la = np.log(avail)
    return {int(t): avail[int(np.abs(la - np.log(t)).argmin())] for t in targets}
