"""Edge attribution patching: Marks et al.'s linear edge effect between SAE latents, one backward pass.

For an edge from node ``u`` (site ``i``) to node ``d`` (site ``i + 1``) the score is

    grad_d(LD) * (d f_d / d f_u) * (f_u - r_u)

averaged over the train prompts: the metric's gradient at the downstream node, times the downstream
node's Jacobian on the upstream one (through the blocks between the two sites), times the upstream
node's change under ablation; for an edge from a last-site node to the metric it is that node's own
attribution ``grad(LD) * (f - r)``. All of it is the gradient, at every weight 1, of the edge
circuit with soft weights (:func:`bench.eval.edges.soft_edge_logit_diff`): each downstream node reads
``r + w (f - r)`` from its upstream nodes, so ``dLD/dw_(u,d)`` at ``w = 1`` is exactly the product
above (the chain rule through ``f_d``), computed by autograd for every edge at once. Positive: the
edge supports the clean answer (its removal would lower the logit difference to first order).

The edges are those of the run's edge universe (the same node circuit for every edge method), whose
nodes all keep their clean values at w = 1: the linearisation point is the node circuit itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.api import EdgeMethodContext, EdgeScores, Method, MethodConfig
from bench.eval.edges import soft_edge_logit_diff


@dataclass(frozen=True)
class EdgeAttributionPatchingConfig(MethodConfig):
    batch_size: int = 16  # prompts per backward (each runs one segment forward per downstream node)


class EdgeAttributionPatching(Method):
    name = "edge_attribution_patching"
    version = "1"
    kind = "scores"
    unit = "edges"
    gradient_based = True
    Config = EdgeAttributionPatchingConfig

    def discover(self, ctx: EdgeMethodContext) -> EdgeScores:
        cand = ctx.edge_candidates
        dev = ctx.spliced.device  # the weights live beside the model (a GPU, or the planner's meta device)
        w = [torch.ones(e.shape, device=dev, requires_grad=True) for e in cand.edges]
        tm = torch.ones(cand.to_metric.shape, device=dev, requires_grad=True)
        n = len(ctx.train)
        for start, batch in ctx.train.batches(self.config.batch_size):
            ld = soft_edge_logit_diff(ctx.spliced, batch, cand.nodes, w, tm, ctx.replacement, start)
            (ld.sum() / n).backward()
        # a weight no path uses (a site of the universe without nodes) gets no gradient: its edges score 0
        grads = [x.grad.detach() if x.grad is not None else torch.zeros_like(x) for x in [*w, tm]]
        return EdgeScores([g * e.to(dev) for g, e in zip(grads[:-1], cand.edges)], grads[-1] * cand.to_metric.to(dev))
