"""Edge circuits between SAE latents, evaluated exactly (the harness: bench/run/edge_cell.py, docs/edges.md).

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

import torch

from bench.api import EdgeCircuit, candidate_edges  # noqa: F401 - re-exported: the edge types live in the plugin API
from bench.data import TaskData, logit_diff
from bench.errors import UsageError
from bench.model.ablation import Replacement
from bench.model.spliced import SplicedModel, start_block

EDGE_POLICIES = ("drop", "mean")


def flat(c: EdgeCircuit) -> torch.Tensor:
    """Every edge slot of ``c`` in one vector: the site pairs' matrices (row-major, in site order),
    then the metric edges. The order every cut and every score vector uses."""
    return torch.cat([e.flatten() for e in c.edges] + [c.to_metric.flatten()])


def unflat(template: EdgeCircuit, v: torch.Tensor, params: dict | None = None) -> EdgeCircuit:
    """The edge circuit over ``template``'s nodes whose edge slots are the bool vector ``v``."""
    sizes = [e.numel() for e in template.edges] + [template.to_metric.numel()]
    parts = v.to(torch.bool).split(sizes)
    edges = [p.view(e.shape) for p, e in zip(parts, template.edges)]
    return EdgeCircuit(template.sites, template.nodes, edges, parts[-1].view(template.to_metric.shape), dict(params or {}))


def restrict_edges(c: EdgeCircuit, candidates: EdgeCircuit) -> EdgeCircuit:
    """``c``'s edges that are candidate edges (CPU bool), params kept."""
    return unflat(candidates, flat(c).cpu().bool() & flat(candidates).cpu().bool(), c.params)


def complement_edges(c: EdgeCircuit, candidates: EdgeCircuit) -> EdgeCircuit:
    """Every candidate edge except ``c``'s: the edge circuit's complement within the edge universe."""
    return unflat(candidates, flat(candidates).cpu().bool() & ~flat(c).cpu().bool(), {"complement": True})


def top_k_edges(values: list[torch.Tensor], to_metric: torch.Tensor, candidates: EdgeCircuit, k: int,
                rule: str = "abs") -> EdgeCircuit:
    """The ``k`` candidate edges ranked first by ``rule`` (``abs``: largest |score|; ``positive``:
    largest signed score); ties by slot order (a stable sort), so the cut at k is inside the cut at k + 1."""
    if rule not in ("abs", "positive"):
        raise ValueError(f"cut rule must be 'abs' or 'positive', got {rule!r}")
    s = torch.cat([v.detach().cpu().float().flatten() for v in values] + [to_metric.detach().cpu().float().flatten()])
    s = s.abs() if rule == "abs" else s
    cand = flat(candidates).cpu().bool()
    s = s.masked_fill(~cand, -float("inf"))
    k = max(0, min(int(k), int(cand.sum())))
    keep = torch.zeros(len(s), dtype=torch.bool)
    keep[torch.sort(s, descending=True, stable=True).indices[:k]] = True
    return unflat(candidates, keep & cand, {"k": k, "cut_rule": rule})


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
    # counted as a partial pass (and its backward, when one flows through it), like run_from
    spliced._count(resid, len(f), (stop - start) / spliced.model.cfg.n_layers)
    return spliced.encode(site_to, resid)


def _site_inputs(spliced: SplicedModel, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """:meth:`SplicedModel.site_inputs`, counted as the full forward it is."""
    inputs = spliced.site_inputs(tokens)
    spliced.counter.forward_calls += 1
    spliced.counter.forward_prompts += len(tokens)
    spliced.counter.forward_model_fraction += len(tokens)
    return inputs


def edge_logit_diff(spliced: SplicedModel, data: TaskData, circuit: EdgeCircuit, replacement: Replacement,
                    max_rows: int = 1024) -> torch.Tensor:
    """Per-prompt logit difference ``[n]`` (float, CPU) of ``circuit`` on ``data`` (the split
    ``replacement`` was made for, from its first prompt), exactly as the module docstring defines it."""
    return edge_logit_diff_on_device(spliced, data, circuit, replacement, max_rows).float().cpu()


@torch.no_grad()
def edge_logit_diff_on_device(spliced: SplicedModel, data: TaskData, circuit: EdgeCircuit, replacement: Replacement,
                              max_rows: int = 1024) -> torch.Tensor:
    """:func:`edge_logit_diff` left on the model's device (the planner runs it on the meta device)."""
    _check_policy(spliced)
    sites = circuit.sites
    if list(sites) != [s for s in spliced.sites if s in set(sites)] or len(sites) != len(spliced.sites):
        raise UsageError(f"edge circuits: the circuit's sites {sites} must be the model's sites {spliced.sites}, in order")
    dev = spliced.device
    n = len(data)
    repl = {s: r.to(dev) for s, r in replacement.rows(0, n).items()}
    inputs = _site_inputs(spliced, data.clean)  # the residual entering each site on a clean run: BOS rows only
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
    return logit_diff(logits, data.clean_answer, data.patch_answer)


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
    logit difference of ``data`` (prompts ``start:`` of the split ``replacement`` was made for).

    Downstream node ``d`` reads its upstream site's latents as ``r + w[:, d] (f - r)`` at the upstream
    nodes (``r`` everywhere else); the metric reads the last site as ``r + to_metric (f - r)`` at its
    nodes. With 0/1 weights this is :func:`edge_logit_diff` (one segment forward per downstream node
    here, not per distinct in-edge set); its gradient at ``w = 1`` is the linear edge effect of
    Marks et al. (the metric's gradient at ``d`` times ``d``'s Jacobian on ``u`` times ``f_u - r_u``),
    computed by autograd.

    Weights ``[n_up, n_down]`` and ``to_metric [n_last]`` give ``[n]``; with a leading group
    dimension (``[G, n_up, n_down]``, ``[G, n_last]``: e.g. one edge mask per lambda) the G circuits
    run in one batched pass and the result is ``[G, n]``.
    """
    _check_policy(spliced)
    grouped = to_metric.dim() == 2
    if not grouped:
        weights, to_metric = [w[None] for w in weights], to_metric[None]
    g = to_metric.shape[0]
    sites = list(spliced.sites)
    dev = spliced.device
    n = len(data)
    repl = {s: r.to(dev) for s, r in replacement.rows(start, start + n).items()}
    with torch.no_grad():
        inputs = _site_inputs(spliced, data.clean)
        f0 = spliced.encode(sites[0], inputs[sites[0]].to(dev))
    first = nodes[sites[0]]
    f_prev = _keep(f0, first, repl[sites[0]], n)[None].expand(g, -1, -1, -1)  # [G, n, pos, d]
    for i in range(1, len(sites)):
        up, down = sites[i - 1], sites[i]
        nu, nd = nodes[up].to(dev), nodes[down].to(dev)
        r_up = _ablated(repl[up], n, f_prev)  # [n, pos, d_up]
        w = weights[i - 1].to(dev, f_prev.dtype)  # [G, n_up, n_down]
        m = torch.zeros(g, len(nd), *f_prev.shape[2:], device=dev, dtype=f_prev.dtype)  # [G, n_down, pos, d_up]
        if len(nu) and len(nd):
            m[:, :, nu[:, 0], nu[:, 1]] = w.transpose(1, 2)  # autograd records the write
        f_in = (r_up + m[:, :, None] * (f_prev[:, None] - r_up)).reshape(g * len(nd) * n, *f_prev.shape[2:])
        f_next = _ablated(repl[down], n, f_prev)[None].repeat(g, 1, 1, 1)  # [G, n, pos, d_down]
        if len(nd):
            f_out = _segment(spliced, up, down, inputs[up][:1].to(dev), f_in)
            f_out = f_out.view(g, len(nd), n, *f_out.shape[1:])
            j = torch.arange(len(nd), device=dev)
            vals = f_out[:, j, :, nd[:, 0], nd[:, 1]]  # [n_down, G, n]: node j's own latent, read from its own rows
            f_next[:, :, nd[:, 0], nd[:, 1]] = vals.permute(1, 2, 0)  # [G, n, n_down]
        f_prev = f_next
    last = sites[-1]
    nl = nodes[last].to(dev)
    r_last = _ablated(repl[last], n, f_prev)
    wm = torch.zeros(g, *f_prev.shape[2:], device=dev, dtype=f_prev.dtype)
    if len(nl):
        wm[:, nl[:, 0], nl[:, 1]] = to_metric.to(dev, f_prev.dtype)
    final = (r_last + wm[:, None] * (f_prev - r_last)).reshape(g * n, *f_prev.shape[2:])
    logits = spliced.run_from(last, inputs[last].to(dev).repeat(g, 1, 1), {last: lambda f, v=final: v}, latents=final)
    out = logit_diff(logits, data.clean_answer.repeat(g), data.patch_answer.repeat(g)).view(g, n)
    return out if grouped else out[0]
