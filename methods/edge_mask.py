"""A learned binary mask over edges between SAE latents: the paper's mask moved from nodes to edges.

The paper names "extending masking to edges between latents" as its first piece of future work; this
is that extension, on the run's edge universe (the same node circuit and candidate edges for every
edge method). Each candidate edge ``e`` (site ``i`` to ``i + 1``, or last site to the metric) has a
logit ``m_e`` (initialised to 1) and a soft weight ``s_e = sigmoid(T m_e)`` with the node mask's
temperature schedule (``T_i = 200 ** (1.1 i / S)`` over ``round(1.1 S)`` steps). A downstream node
reads ``r + s (f - r)`` from each upstream node (:func:`bench.eval.edges.soft_edge_logit_diff`: one
segment forward per downstream node and prompt), and the loss per lambda is

    | LD_ref − LD_masked | + lambda * (sum of s over the candidate edges)

with ``LD_ref`` the spliced model with every latent kept, on the same batch (as for the node mask:
the edge circuit is asked to reproduce the model, and can at best reach its node circuit). Adam,
batches of ``batch_size`` train prompts; after training the mask is binarised (``m > 0``).

**The lambda sweep** trains in one batched pass: the masks of all lambdas are stacked ``[L, ...]``
and their rows share each forward and backward (the loss is the sum of the lambdas' losses; Adam is
elementwise, so each mask gets the updates it would get alone). ``lambda_chunk`` runs the lambdas
that many at a time, each chunk's backward adding its gradients before the one Adam step: the same
updates (to float summation) in a fraction of the memory (``bench plan`` shows how much). The grid is scale-free: lambda =
``c * |mean LD_ref| / n_candidate_edges``, ``c`` log-spaced from ``c_min`` (0.03) to ``c_max`` (30), so
``c = 1`` prices keeping every edge at the whole logit difference, and the same ``c`` means the same
trade on every task.

**Restarts** (``restarts`` = 2, as the node mask): restart r >= 1 starts from logits 1 +
``init_noise`` * N(0, 1) and trains at the next learning rate of ``lrs`` (default 1 then 0.1); per
lambda the restart with the lowest objective at infinite temperature (binarised edges: ``|LD_ref −
LD| + lambda * n_edges``) on the first ``judge_prompts`` train prompts is kept, and its params say
which. **Steps** are fixed (``steps`` = 60, about the paper's count on its code tasks); the node
mask's step ladder is not ported: the edge mask's rows record their schedule.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from bench.api import EdgeCircuit, EdgeCircuitSet, EdgeMethodContext, Method, MethodConfig
from bench.eval.edges import soft_edge_logit_diff
from bench.model.ablation import Replacement
from methods.binary_mask import batch_schedule, temperature


@dataclass(frozen=True)
class EdgeMaskConfig(MethodConfig):
    lambdas: tuple[float, ...] = ()  # explicit lambdas (absolute); () = the scale-free grid below
    c_min: float = 0.03
    c_max: float = 30.0
    n_lambdas: int = 8
    steps: int = 60
    lr: float = 1.0
    lrs: tuple[float, ...] = ()  # restart r trains at lrs[r % len(lrs)]; () = (lr, lr / 10)
    restarts: int = 2
    init_noise: float = 0.5
    batch_size: int = 16
    judge_prompts: int = 64
    lambda_chunk: int = 0  # lambdas per forward and backward (0: all); fewer hold less memory, same updates

    def __post_init__(self) -> None:
        if self.steps < 1 or self.n_lambdas < 1 or self.batch_size < 1 or self.restarts < 1 or self.judge_prompts < 1:
            raise ValueError("steps, n_lambdas, batch_size, restarts and judge_prompts must be >= 1")
        if self.lambda_chunk < 0:
            raise ValueError("lambda_chunk must be >= 0 (0: every lambda in one forward)")
        if not 0 < self.c_min <= self.c_max:
            raise ValueError("need 0 < c_min <= c_max")
        if self.lr <= 0 or any(lr <= 0 for lr in self.lrs) or any(lam < 0 for lam in self.lambdas):
            raise ValueError("learning rates must be > 0 and lambdas >= 0")

    def restart_lr(self, r: int) -> float:
        lrs = self.lrs or (self.lr, self.lr / 10)
        return lrs[r % len(lrs)]


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little") & ((1 << 63) - 1)


class EdgeMask(Method):
    name = "edge_mask"
    version = "1"
    kind = "circuits"
    unit = "edges"
    Config = EdgeMaskConfig
    quick_overrides = {"steps": 20, "restarts": 1, "n_lambdas": 6, "batch_size": 8, "judge_prompts": 32}

    def discover(self, ctx: EdgeMethodContext) -> EdgeCircuitSet:
        cfg = self.config
        cand = ctx.edge_candidates
        n_cand = cand.n_edges()
        with torch.no_grad():
            ld_all = torch.cat([ctx.metric(ctx.spliced.run(b.clean), b).float().cpu() for _, b in ctx.train.batches(64)])
        if cfg.lambdas:
            lams, cs = [float(x) for x in cfg.lambdas], [float("nan")] * len(cfg.lambdas)
        else:
            n = cfg.n_lambdas
            cs = [cfg.c_min * (cfg.c_max / cfg.c_min) ** (i / max(1, n - 1)) for i in range(n)]
            lams = [c * abs(float(ld_all.mean())) / n_cand for c in cs]
        judge = list(range(min(cfg.judge_prompts, len(ctx.train))))
        best: list[tuple[float, dict] | None] = [None] * len(lams)
        objs: list[list[float]] = [[] for _ in lams]
        for r in range(cfg.restarts):
            logits = self.train(ctx, lams, ld_all, r)
            obj, n_e = self.objectives(ctx, logits, lams, ld_all, judge)
            for j in range(len(lams)):
                objs[j].append(obj[j])
                if best[j] is None or obj[j] < best[j][0]:
                    best[j] = (obj[j], {"restart": r, "lr": cfg.restart_lr(r), "logits": [x[j] for x in logits]})
        out = []
        for j, lam in enumerate(lams):
            _, b = best[j]
            lg = b["logits"]
            params = {"lambda": lam, "c": cs[j], "restart": b["restart"], "lr": b["lr"], "steps": cfg.steps,
                      "restart_objectives": objs[j]}
            out.append(EdgeCircuit(cand.sites, cand.nodes, [(x > 0) & e for x, e in zip(lg[:-1], cand.edges)],
                                   (lg[-1] > 0) & cand.to_metric, params))
        return EdgeCircuitSet(out)

    def train(self, ctx: EdgeMethodContext, lams: list[float], ld_all: torch.Tensor, restart: int) -> list[torch.Tensor]:
        """Train the masks of all lambdas together; returns their logits ``[L, ...]`` per edge group
        (the site pairs' matrices, then the metric edges)."""
        cfg = self.config
        cand = ctx.edge_candidates
        L, n = len(lams), len(ctx.train)
        dev = ctx.spliced.device  # the masks live beside the model (a GPU, or the planner's meta device)
        shapes = [tuple(e.shape) for e in cand.edges] + [tuple(cand.to_metric.shape)]
        masks = [e.float().to(dev) for e in cand.edges] + [cand.to_metric.float().to(dev)]  # non-candidate slots stay at 0
        logits = []
        for gi, shape in enumerate(shapes):
            init = torch.ones((L, *shape))
            if restart and cfg.init_noise:
                g = torch.Generator().manual_seed(_seed(ctx.seed, restart, gi, "init"))
                init += cfg.init_noise * torch.randn(init.shape, generator=g)
            logits.append(init.to(dev).requires_grad_(True))
        opt = torch.optim.Adam(logits, lr=cfg.restart_lr(restart))
        gen = torch.Generator().manual_seed(_seed(ctx.seed, restart, "batches"))
        lam_t = torch.tensor(lams, device=dev)
        ld_ref = ld_all.to(dev)
        total = round(1.1 * cfg.steps)
        chunk = cfg.lambda_chunk or L
        # the node mask's batch order and temperature schedule (methods.binary_mask), shared by every lambda
        for i, idx in enumerate(batch_schedule(gen, n, cfg.batch_size, total)):
            temp = temperature(i, cfg.steps)
            opt.zero_grad(set_to_none=True)
            for c0 in range(0, L, chunk):  # the lambdas' losses are a sum: each chunk's backward adds its gradients
                sl = slice(c0, min(L, c0 + chunk))
                soft = [torch.sigmoid(temp * x[sl]) * m for x, m in zip(logits, masks)]
                ld = self._ld(ctx, soft, idx)  # [chunk, b]
                faith = (ld_ref[idx.to(dev)].mean() - ld.float().mean(1)).abs()
                sparsity = torch.stack([s.reshape(sl.stop - sl.start, -1).sum(1) for s in soft]).sum(0)
                (faith + lam_t[sl] * sparsity).sum().backward()
            opt.step()
        return [x.detach().cpu() for x in logits]

    def _ld(self, ctx: EdgeMethodContext, weights: list[torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
        """``[L, len(idx)]`` logit differences of the train prompts ``idx`` under L edge weightings."""
        data = ctx.train.subset(idx.tolist())
        repl = Replacement(ctx.replacement.kind, ctx.replacement.index(idx))
        return soft_edge_logit_diff(ctx.spliced, data, ctx.edge_candidates.nodes, weights[:-1], weights[-1], repl)

    @torch.no_grad()
    def objectives(self, ctx: EdgeMethodContext, logits: list[torch.Tensor], lams: list[float], ld_all: torch.Tensor,
                   judge: list[int]) -> tuple[list[float], list[int]]:
        """Each lambda's objective at infinite temperature (binarised edges) on the judge prompts."""
        cand = ctx.edge_candidates
        masks = [e for e in cand.edges] + [cand.to_metric]
        binar = [((x > 0) & m).float() for x, m in zip(logits, masks)]
        idx = torch.tensor(judge)
        L = len(lams)
        chunk = self.config.lambda_chunk or L
        ld = torch.cat([torch.cat([self._ld(ctx, [b[c : c + chunk] for b in binar], idx[i : i + 16]).float().cpu()
                                   for c in range(0, L, chunk)], dim=0)
                        for i in range(0, len(idx), 16)], dim=1)
        n_e = torch.stack([b.reshape(len(lams), -1).sum(1) for b in binar]).sum(0)
        obj = (ld_all[idx].mean() - ld.mean(1)).abs() + torch.tensor(lams) * n_e
        return obj.tolist(), n_e.long().tolist()
