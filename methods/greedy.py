"""Greedy backward elimination: a reference for how faithful the best circuit of size k can be.

Not a discovery method to compare with the others but a yardstick: each method's faithfulness at
size k can be reported as a share of this one's. It returns a ranking (:class:`Scores`) like every
method, so the harness cuts it and evaluates it on the held-out test split the same way.

**Why backward, not forward.** With the SAE error term dropped every SAE is a full bottleneck: a
circuit with no node at some site on the path passes nothing about the prompt past it. Starting
from the empty circuit, a single added node sees only replaced values upstream, so it carries
nothing about the prompt (at most a shift shared by every prompt), and the gradient there is no
better: forward greedy cannot find the nodes that carry the task together. Backward elimination
starts from a faithful set and sees the effect of every step.

**The pool.** Eliminating from the whole node universe (thousands of nodes) costs too many
forwards, so elimination starts from a pool of ``pool`` candidate nodes (default 128): the union
of the top nodes of the rankings the other methods make, computed here on the train split, taken
round-robin and skipping duplicates and non-candidates:

1. integrated gradients by signed score (``methods.integrated_gradients`` itself, pinned to the
   paper's 10 steps: a pool only needs the right nodes near the top),
2. attribution patching by signed score (nodes that support the clean answer; one forward and
   backward per batch: ``methods.attribution_patching`` itself),
3. integrated gradients by |score|, 4. attribution patching by |score| (nodes that matter either way),
5. activation magnitude, mean ``|f - r|`` over train prompts (``methods.activation_magnitude``
   itself), which catches nodes the linear estimates miss.

They run with this method's ``batch_size``; being imported, they are part of this method's cache
key, so editing any of them recomputes the greedy cells too. A pool of 64 from AtP and magnitude
alone was measured too weak to be a reference: in the quick run its SVA pool of 32 reached F 0.03,
where IG's 32-node cut reached 0.70.

The reference is therefore **the best over this pool**, not over the universe: a method may beat
it with nodes the pool lacks.

**The objective.** The mean logit difference on the first ``n_prompts`` train prompts, with the
circuit's nodes kept and every other latent replaced (bool masks, the evaluator's edit). With the
normalisation fixed, maximising it maximises F on those prompts.

**Elimination.** Start from the pool. While the set has more than ``exact_below`` nodes, evaluate
every single removal and remove the quarter of the nodes (at least 1, and never going below
``exact_below``) whose removal leaves the highest logit difference; this coarse phase keeps the
cost near-linear in the pool. From ``exact_below`` nodes on, remove one node at a time, the one
whose removal leaves the highest logit difference, down to one node. Every circuit of a round is
evaluated in one stacked run (``stacked_logit_diff``: circuits tiled along the batch).

**Scores.** A pool node scores ``1 + (number of pool nodes eliminated before it)``: the last
survivor scores ``len(pool)``, the first node removed 1; inside a coarse round the nodes are
ordered as they were ranked (highest LD left = removed first). Nodes outside the pool score 0.
Cutting the ranking at ``k <= len(pool)`` therefore gives exactly the greedy circuit of size k,
and the circuits are nested. **Beyond the pool size the cut is meaningless** (the extra nodes are
ties at 0, taken in index order). Greedy backward elimination is exact at ``k = len(pool) - 1``
(every single removal is tried) but in general not at smaller k.

``diagnostics``: ``pool_size``, ``n_prompts``, the mean logit differences of the pool circuit
(``pool_ld_mean``), of every candidate kept (``full_ld_mean``) and of nothing kept
(``empty_ld_mean``), and ``n_evaluations`` (circuits evaluated, those three included).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from bench.api import Method, MethodConfig, MethodContext, Scores
from bench.data import TaskData
from bench.model.masked import stacked_logit_diff
from methods.activation_magnitude import ActivationMagnitude
from methods.attribution_patching import AttributionPatching
from methods.integrated_gradients import IntegratedGradients


@dataclass(frozen=True)
class GreedyConfig(MethodConfig):
    pool: int = 128  # nodes the elimination starts from
    n_prompts: int = 32  # first train prompts the objective is measured on
    exact_below: int = 32  # from this many nodes on, one removal per round
    batch_size: int = 32  # prompts per forward+backward of the attribution-patching pass
    max_rows: int = 512  # (circuit, prompt) rows per stacked forward

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"greedy: {f.name} must be a positive integer, got {v!r}")
        if self.exact_below > self.pool:
            raise ValueError(f"greedy: exact_below ({self.exact_below}) must be <= pool ({self.pool}); "
                             f"lower exact_below with pool")


class _Nodes:
    """Nodes as flat indices into the sites' ``[pos, d_sae]`` grids, concatenated in site order."""

    def __init__(self, ctx: MethodContext):
        self.sites = list(ctx.sites)
        self.shapes = [(ctx.train.n_pos, ctx.spliced.d_sae(s)) for s in self.sites]
        self.sizes = [p * d for p, d in self.shapes]
        self.candidates = self.flat({s: ctx.candidates[s] for s in self.sites}).to(torch.bool)

    def flat(self, per_site: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([per_site[s].detach().cpu().flatten() for s in self.sites])

    def unflat(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        return {s: part.view(shape) for s, part, shape in zip(self.sites, vec.split(self.sizes), self.shapes)}

    def masks(self, nodes: list[int]) -> dict[str, torch.Tensor]:
        keep = torch.zeros(sum(self.sizes), dtype=torch.bool)
        keep[torch.as_tensor(nodes, dtype=torch.long)] = True
        return self.unflat(keep)

    def ranked(self, values: torch.Tensor, where: torch.Tensor) -> list[int]:
        """Indices with ``where`` set, by ``values`` descending (ties: lower index first)."""
        idx = where.nonzero().flatten()
        order = torch.sort(values[idx], descending=True, stable=True).indices
        return idx[order].tolist()


def n_dropped(n: int, exact_below: int) -> int:
    """Nodes one elimination round removes from ``n``: a quarter (at least 1, never going below
    ``exact_below``) above ``exact_below``, else one. The one place of this rule (the elimination
    and ``bench plan``'s count of its circuits both read it)."""
    return min(max(1, n // 4), n - exact_below) if n > exact_below else 1


def round_robin(rankings: list[list[int]], limit: int) -> list[int]:
    """Take the next unseen node of each ranking in turn until ``limit`` nodes (or all used up)."""
    chosen: list[int] = []
    seen: set[int] = set()
    iters = [iter(r) for r in rankings]
    while iters and len(chosen) < limit:
        for it in list(iters):
            node = next((n for n in it if n not in seen), None)
            if node is None:
                iters.remove(it)
                continue
            seen.add(node)
            chosen.append(node)
            if len(chosen) == limit:
                break
    return chosen


class Greedy(Method):
    name = "greedy"
    version = "2"
    kind = "scores"
    gradient_based = False  # a search over circuits, not an estimate of single-node effects
    Config = GreedyConfig
    quick_overrides = {"pool": 48, "n_prompts": 16, "exact_below": 16}

    def discover(self, ctx: MethodContext) -> Scores:
        cfg = self.config
        nodes = _Nodes(ctx)
        pool = self.build_pool(ctx, nodes)
        data = ctx.train.subset(list(range(min(cfg.n_prompts, len(ctx.train)))))
        with torch.no_grad():
            order, ref, n_eval = self.eliminate(ctx, nodes, pool, data)
        scores = torch.zeros(sum(nodes.sizes))
        if order:
            scores[torch.as_tensor(order, dtype=torch.long)] = torch.arange(1, len(order) + 1, dtype=torch.float32)
        diagnostics = {"pool_size": float(len(pool)), "n_prompts": float(len(data)), "n_evaluations": float(n_eval),
                       "pool_ld_mean": ref[0], "full_ld_mean": ref[1], "empty_ld_mean": ref[2]}
        return Scores({s: v.clone() for s, v in nodes.unflat(scores).items()}, diagnostics)

    @staticmethod
    def pool_methods(batch_size: int) -> tuple[Method, Method, Method]:
        """The methods whose rankings make the pool, as the pool runs them: (IG, AtP, magnitude)
        (``bench plan`` models the pool with these)."""
        return (IntegratedGradients(n_steps=10, batch_size=min(batch_size, 16)), AttributionPatching(batch_size=batch_size),
                ActivationMagnitude(batch_size=batch_size))

    @staticmethod
    def n_evaluations(pool: int, exact_below: int) -> int:
        """Circuits :meth:`eliminate` evaluates from a pool of ``pool`` nodes, its three reference
        circuits included (the same loop arithmetic, for ``bench plan``)."""
        n, total = pool, 3
        while n > 1:
            total += n
            n -= n_dropped(n, exact_below)
        return total

    def build_pool(self, ctx: MethodContext, nodes: _Nodes) -> list[int]:
        """The pool: positive IG, positive AtP, |IG|, |AtP| and activation magnitude, round-robin
        over candidates."""
        ig_m, atp_m, mag_m = self.pool_methods(self.config.batch_size)
        ig = nodes.flat(ig_m.discover(ctx).values).float()
        atp = nodes.flat(atp_m.discover(ctx).values).float()
        mag = nodes.flat(mag_m.discover(ctx).values).float()
        cand = nodes.candidates
        rankings = [nodes.ranked(ig, cand & (ig > 0)), nodes.ranked(atp, cand & (atp > 0)), nodes.ranked(ig.abs(), cand),
                    nodes.ranked(atp.abs(), cand), nodes.ranked(mag, cand)]
        return round_robin(rankings, self.config.pool)

    def eliminate(self, ctx: MethodContext, nodes: _Nodes, pool: list[int],
                  data: TaskData) -> tuple[list[int], list[float], int]:
        """``(pool nodes in elimination order, last survivor last; [pool, full, empty] mean LDs;
        circuits evaluated)``. ``data`` is the first prompts of the train split, so the train
        replacement applies to it as it is (``Replacement.rows`` from prompt 0)."""

        def mean_ld(circuits: list[dict[str, torch.Tensor]]) -> torch.Tensor:
            return stacked_logit_diff(ctx.spliced, data, circuits, ctx.replacement, self.config.max_rows).mean(1)

        full = nodes.unflat(nodes.candidates.clone())
        ref = mean_ld([nodes.masks(pool), full, nodes.masks([])]).tolist()
        n_eval = 3
        current, removed = list(pool), []
        while len(current) > 1:
            left = mean_ld([nodes.masks(current[:i] + current[i + 1:]) for i in range(len(current))])
            n_eval += len(current)
            n_drop = n_dropped(len(current), self.config.exact_below)
            # Highest LD left after removal = least needed: removed first. Ties: earlier pool node first.
            drop = torch.sort(left, descending=True, stable=True).indices[:n_drop].tolist()
            removed += [current[i] for i in drop]
            gone = set(drop)
            current = [c for i, c in enumerate(current) if i not in gone]
        return removed + current, ref, n_eval
