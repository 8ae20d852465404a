"""Edge circuits between SAE latents, evaluated exactly (issue: edges; not yet wired into the harness).

A node circuit keeps nodes ``(site, pos, latent)``. An edge circuit over it keeps *edges*: from a
node at one site to a node at the next site (upstream position <= downstream position: attention
only looks back), and from each node of the last site to the metric. Its semantics, exactly:

* a first-site node has its clean value (it has no upstream SAE);
* a node ``d`` at a later site ``s_i`` receives, through the blocks between ``s_{i-1}`` and ``s_i``,
  only what its kept in-edges carry: its value is ``encode_{s_i}(blocks(r_d))[pos_d, latent_d]``,
  where ``r_d`` is the residual decoded from site ``s_{i-1}``'s latents with every latent *without*
  a kept edge into ``d`` at its ablation value (and the nodes with one at their own edge-circuit
  values, recursively), plus the error term of the run's policy;
* every latent that is not a node of the circuit is at its ablation value, as in the node circuit;
* the metric reads the model run on from the last site with only the nodes that keep their edge to
  the metric (the others ablated).

Keeping every candidate edge gives the node circuit exactly (each node sees all its upstream nodes,
at their node-circuit values); keeping none gives every later-site node the value it takes when
everything upstream of it is ablated, and the metric the value of the all-ablated last site.

Evaluation batches the downstream nodes by their in-edge sets: one forward of the blocks between two
sites per distinct set (prompts tiled once per set). Error policies: ``drop`` and ``mean``; ``keep``
(the true error of the current input) has no single input under an edge circuit and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bench.data import TaskData, logit_diff
from bench.errors import UsageError
from bench.model.ablation import Replacement
from bench.model.spliced import SplicedModel, start_block

EDGE_POLICIES = ("drop", "mean")


@dataclass
class EdgeCircuit:
    """Nodes per site (``[n, 2]`` long: position, latent) and the kept edges between them.

    ``edges[i]`` is a bool ``[n_nodes(site i), n_nodes(site i+1)]`` matrix for consecutive sites,
    ``to_metric`` a bool ``[n_nodes(last site)]``. ``candidates()`` is the full set allowed by
    position (``pos_u <= pos_d``)."""

    sites: list[str]
    nodes: dict[str, torch.Tensor]
    edges: list[torch.Tensor]
    to_metric: torch.Tensor
    params: dict = field(default_factory=dict)

    @classmethod
    def from_masks(cls, masks: dict[str, torch.Tensor], sites: list[str], keep_all: bool = True) -> EdgeCircuit:
        """The edge circuit over a node circuit's nodes (bool ``[pos, d_sae]`` per site): every
        candidate edge kept (``keep_all``) or none."""
        nodes = {s: masks[s].nonzero().long().cpu() for s in sites}
        edges = [candidate_edges(nodes[a], nodes[b]) & keep_all for a, b in zip(sites, sites[1:])]
        return cls(list(sites), nodes, edges, torch.full((len(nodes[sites[-1]]),), keep_all, dtype=torch.bool))

    def n_edges(self) -> int:
        return int(sum(int(e.sum()) for e in self.edges) + int(self.to_metric.sum()))

    def candidates(self) -> EdgeCircuit:
        return EdgeCircuit(self.sites, self.nodes,
                           [candidate_edges(self.nodes[a], self.nodes[b]) for a, b in zip(self.sites, self.sites[1:])],
                           torch.ones_like(self.to_metric), dict(self.params))


def candidate_edges(up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """``[len(up), len(down)]``: True where the upstream node's position is <= the downstream one's."""
    return up[:, 0].view(-1, 1) <= down[:, 0].view(1, -1)


def _segment(spliced: SplicedModel, site_from: str, site_to: str, x_ref: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Latents at ``site_to`` ``[rows, pos, d_sae]`` when ``site_from``'s latents are ``f``.

    ``x_ref`` is the residual entering ``site_from`` on a clean run of any prompt ``[1, pos, d_model]``:
    only its BOS row is used (BOS passes through unedited, and it is the same in every prompt, which
    all start with the same token and see nothing else at position 0), its length sets the mean error's.
    """
    out = spliced.substitute(site_from, x_ref.expand(len(f), -1, -1), latents=f)
    # the blocks after site_from, up to the residual entering site_to's SAE (start_block of each)
    start, stop = start_block(site_from), start_block(site_to)
    resid = spliced.model(out, start_at_layer=start, stop_at_layer=stop) if stop > start else out
    n_layers = spliced.model.cfg.n_layers
    spliced.counter.forward_calls += 1
    spliced.counter.forward_prompts += len(f)
    spliced.counter.forward_model_fraction += len(f) * (stop - start) / n_layers
    return spliced.encode(site_to, resid)


@torch.no_grad()
def edge_logit_diff(spliced: SplicedModel, data: TaskData, circuit: EdgeCircuit, replacement: Replacement,
                    max_rows: int = 1024) -> torch.Tensor:
    """Per-prompt logit difference ``[n]`` of ``circuit`` on ``data`` (the split ``replacement`` was
    made for, from its first prompt), exactly as the module docstring defines it."""
    _check_policy(spliced)
    sites = circuit.sites
    if list(sites) != [s for s in spliced.sites if s in set(sites)] or len(sites) != len(spliced.sites):
        raise UsageError(f"edge circuits: the circuit's sites {sites} must be the model's sites {spliced.sites}, in order")
    dev = spliced.device
    n = len(data)
    repl = {s: r.to(dev) for s, r in replacement.rows(0, n).items()}
    inputs = spliced.site_inputs(data.clean)  # the residual entering each site on a clean run: BOS rows only
    first = sites[0]
    f_clean = spliced.encode(first, inputs[first].to(dev))
    f_prev = _keep(f_clean, circuit.nodes[first], repl[first], n)  # site 1: circuit nodes clean, others ablated
    for i in range(1, len(sites)):
        up, down = sites[i - 1], sites[i]
        f_next = _ablated(repl[down], n, f_prev)
        e = circuit.edges[i - 1]  # [n_up, n_down]
        groups: dict[bytes, list[int]] = {}
        for j in range(e.shape[1]):
            groups.setdefault(e[:, j].numpy().tobytes(), []).append(j)
        keys = list(groups)
        per = max(1, max_rows // n)
        for g0 in range(0, len(keys), per):
            chunk = keys[g0 : g0 + per]
            f_in = torch.cat([_keep(f_prev, circuit.nodes[up][torch.from_numpy(_bools(k))], repl[up], n) for k in chunk])
            f_out = _segment(spliced, up, down, inputs[up][:1].to(dev), f_in).view(len(chunk), n, *f_prev.shape[1:-1], -1)
            for c, k in enumerate(chunk):
                idx = circuit.nodes[down][groups[k]]
                f_next[:, idx[:, 0], idx[:, 1]] = f_out[c][:, idx[:, 0], idx[:, 1]]
        f_prev = f_next
    last = sites[-1]
    f_last = _keep(f_prev, circuit.nodes[last][circuit.to_metric], repl[last], n)
    logits = spliced.run_from(last, inputs[last].to(dev), {last: lambda f, v=f_last: v}, latents=f_last)
    return logit_diff(logits, data.clean_answer, data.patch_answer).float().cpu()


def _check_policy(spliced: SplicedModel) -> None:
    if spliced.error_policy not in EDGE_POLICIES:
        raise UsageError(f"edge circuits: error policy {spliced.error_policy!r} is not supported "
                         f"(one of {', '.join(EDGE_POLICIES)}): 'keep' has no single input to take the error of")


def _bools(key: bytes):
    import numpy as np

    return np.frombuffer(key, dtype=bool).copy()


def _ablated(r: torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
    """Every latent at its ablation value ``[n, pos, d_sae]``."""
    return (r.expand(n, -1, -1) if r.dim() == 2 else r).to(like.dtype).clone()


def _keep(f: torch.Tensor, nodes: torch.Tensor, r: torch.Tensor, n: int) -> torch.Tensor:
    """``f`` at ``nodes`` ``[k, 2]`` (position, latent), every other latent at its ablation value."""
    out = _ablated(r, n, f)
    if len(nodes):
        out[:, nodes[:, 0], nodes[:, 1]] = f[:, nodes[:, 0], nodes[:, 1]]
    return out


def soft_edge_logit_diff(spliced: SplicedModel, data: TaskData, nodes: dict[str, torch.Tensor],
                         weights: list[torch.Tensor], to_metric: torch.Tensor, replacement: Replacement,
                         start: int = 0) -> torch.Tensor:
    """The edge circuit with float edge weights ``w`` in [0, 1], differentiable in them: per-prompt
    logit difference ``[n]`` of ``data`` (prompts ``start:`` of the split ``replacement`` was made for).

    Downstream node ``d`` reads its upstream site's latents as ``r + w[:, d] (f - r)`` at the upstream
    nodes (``r`` everywhere else); the metric reads the last site as ``r + to_metric (f - r)`` at its
    nodes. With 0/1 weights this is :func:`edge_logit_diff` (one segment forward per downstream node
    here, not per distinct in-edge set); its gradient at ``w = 1`` is the linear edge effect of
    Marks et al. (the metric's gradient at ``d`` times ``d``'s Jacobian on ``u`` times ``f_u - r_u``),
    computed by autograd.
    """
    _check_policy(spliced)
    sites = list(spliced.sites)
    dev = spliced.device
    n = len(data)
    repl = {s: r.to(dev) for s, r in replacement.rows(start, start + n).items()}
    with torch.no_grad():
        inputs = spliced.site_inputs(data.clean)
        f0 = spliced.encode(sites[0], inputs[sites[0]].to(dev))
    first = nodes[sites[0]]
    f_prev = _ablated(repl[sites[0]], n, f0)
    f_prev[:, first[:, 0], first[:, 1]] = f0[:, first[:, 0], first[:, 1]]
    for i in range(1, len(sites)):
        up, down = sites[i - 1], sites[i]
        nu, nd = nodes[up], nodes[down]
        r_up = _ablated(repl[up], n, f_prev)
        w = weights[i - 1].to(dev, f_prev.dtype)  # [n_up, n_down]
        m = torch.zeros(len(nd), *f_prev.shape[1:], device=dev, dtype=f_prev.dtype)  # [n_down, pos, d_up]
        m = m.index_put((torch.arange(len(nd), device=dev).repeat_interleave(len(nu)),
                         nu[:, 0].repeat(len(nd)).to(dev), nu[:, 1].repeat(len(nd)).to(dev)), w.t().reshape(-1))
        f_in = (r_up[None] + m[:, None] * (f_prev - r_up)[None]).reshape(len(nd) * n, *f_prev.shape[1:])
        f_out = _segment(spliced, up, down, inputs[up][:1].to(dev), f_in).view(len(nd), n, *f_prev.shape[1:-1], -1)
        vals = f_out[torch.arange(len(nd), device=dev), :, nd[:, 0].to(dev), nd[:, 1].to(dev)]  # [n_down, n]
        f_next = _ablated(repl[down], n, f_out)
        if len(nd):
            f_next[:, nd[:, 0].to(dev), nd[:, 1].to(dev)] = vals.t()  # autograd records the write
        f_prev = f_next
    last = sites[-1]
    nl = nodes[last]
    r_last = _ablated(repl[last], n, f_prev)
    wm = torch.zeros(f_prev.shape[1:], device=dev, dtype=f_prev.dtype)
    if len(nl):
        wm = wm.index_put((nl[:, 0].to(dev), nl[:, 1].to(dev)), to_metric.to(dev, f_prev.dtype))
    final = r_last + wm * (f_prev - r_last)
    logits = spliced.run_from(last, inputs[last].to(dev), {last: lambda f, v=final: v}, latents=final)
    return logit_diff(logits, data.clean_answer, data.patch_answer)
