"""Learned binary masks over SAE latents (Caples, Nainani, McDougall, Neuhaus 2025).

Continuous sparsification, deterministic: each node has a logit ``m`` (initialised to 1, every
node on) and a soft mask ``s = sigmoid(T m)`` whose temperature rises as
``T_i = 200 ** (1.1 i / S)`` over ``round(1.1 S)`` steps (1 -> about 600). Ablated latents are
replaced as the benchmark's ablation says (default: the per-position mean over corrupted train
prompts), ``f' = r + s (f - r)``. The loss is

    | LD_ref - LD_masked | + lambda * mean over SAEs ( sum over nodes of s )

with ``LD_ref`` the unmasked model+SAEs on the same prompts, computed once (it is constant).
Adam, lr 1, batches of 16 train prompts. After training the mask is binarised (``m > 0``). One
fresh mask per lambda gives circuits of different sizes.

**Seeds.** Each mask draws its batches from its own generator, seeded by a hash of
``(ctx.seed, lambda)``: the same lambda under the same seed gives the same circuit whatever grid
it is part of.

**The sweep** (``sweep="batched"``, default). The masks of all lambdas train together: logits
stacked ``[L, pos, d_sae]`` per SAE (``[L, d_sae]`` per latent), each lambda's batch drawn from
its own generator exactly as alone, the L batches concatenated into one forward and one backward
per step (block ``j`` of rows is edited with mask ``j`` and, for per-prompt replacements, its own
prompts' replacement), loss = sum of the lambdas' losses, one Adam over the stacked logits (Adam
is elementwise: the same updates as L separate Adams). The circuits equal the sequential sweep's
(``sweep="sequential"``, one mask after another) in exact arithmetic; in floats the summation
order differs, and the optimisation is chaotic enough that this can change a circuit (see
Restarts: on IOI, changing only the co-batched lambdas moved one mask's train F from 0.21 to 0.68). ``max_rows`` caps
the rows of one forward (L x batch); more lambdas are trained in chunks, with the same circuits.

**The lambda grid** (default: ``adaptive=True``, no ``lambdas`` and no range given). The useful
range of lambda differs by orders of magnitude between tasks, and a fixed grid spends points on
empty circuits at one end and on near-identical large ones at the other. So a cheap probe comes
first, and the grid is placed by circuit *size*:

1. Probe: short masks (``probe_steps`` = 10, the temperature schedule compressed to match; seeds
   salted apart from the sweep's), batched, at one lambda per decade from ``probe_min`` = 1e-6 to
   ``probe_max`` = 100, then a decade higher at a time (at most 4) while the top one is non-empty.
   Each gives a circuit size (binarised nodes among the train candidates). 1e-6 is the large end:
   below about 1e-7 the sparsity gradient falls under Adam's epsilon and nodes with no effect stay
   on (on SVA all 218 candidates of the last SAE's non-final positions, which cannot reach the
   logits, are kept at 1e-8 and none at 1e-7), so smaller lambdas only add inert nodes. On the
   embedded tasks the 1e-6 circuit is 10-21% larger than the 1e-5 one: nearly all that matters.
2. Edge of emptiness: between the largest non-empty probe lambda and the first empty one above
   it, three more probes at quarter decades. The grid's top is the *second*-largest non-empty
   probe lambda (a quarter decade inside the edge: full-length training removes a few more
   nodes than the short probe, and the edge circuit often comes out empty).
3. The n_lambdas target sizes are log-spaced from the top lambda's probe size (a few nodes) to
   the 1e-6 probe's size; each target becomes the largest lambda whose probe size (a monotone
   envelope, interpolated linearly in log lambda vs log size) still reaches it. Lambdas are
   rounded to 4 significant digits (so their seeds are the same on every machine); duplicates are
   dropped. Each circuit's params carry the probe's predicted size (``probe_nodes``).
4. Repair: a circuit that still comes out empty is retrained a quarter decade lower (at most
   three times), so no grid point is an empty circuit.

With ``spacing="quadratic"`` (the paper's ``lambda_max (i/n)**2``) the probe only sets
``lambda_max`` (step 2's top). A given range (``lambda_min`` and ``lambda_max``; for quadratic
``lambda_max``), explicit ``lambdas`` or ``adaptive=False`` skip the probe; with no range given
the fixed range is 0.001-3 (the previous default, log-spaced).

**Traces** (``Circuit.trace``, ``n_log`` = 10 points spread over training plus the final state):
see ``TRACE``. The binarised circuit's task loss costs one extra forward (no grad) per point, two
at the final state (soft and binarised). ``Circuit.scores`` holds the final mask logits
``[pos, d_sae]`` per SAE (CPU, float): the mask read as a ranking.

**Restarts** (``restarts`` = 2). The optimisation is unstable: lr 1 with a temperature rising to
about 600 flips nodes on float noise, so on IOI the same seed, lambda and batches with only the
co-batched lambdas changed gave train F 0.21 vs 0.68 at 260 nodes, and the committed 30-step IOI
masks scored train F 0.67 at 3096 nodes. Each lambda therefore trains ``restarts`` masks: restart
0 as before (logits 1, the lambda's own batch order, ``lr``); restart r >= 1 salts its batch order
apart, adds ``init_noise`` * N(0, 1) to its initial logits and trains at the next learning rate
of ``lrs`` (default ``(lr, lr / 10)``). On IOI seed 0 with 30 steps, lr 1 at lambda 1e-6 kept
2838 nodes at train F 0.87 (test 0.54) where lr 0.1 at lambda 0.012 kept 778 at train F 1.00
(test 0.90); with two restarts and the step ladder (8 lambdas; it reached 120 steps without
converging) the lr-0.1 restart won 5 of the 8 lambdas on train. The mask kept is the one with the lowest
objective on the first ``judge_prompts`` train prompts (:class:`Judge`: the training loss at
infinite temperature, on more prompts than a batch); its params name the restart, its learning
rate and every restart's objective.

**Steps** (``steps`` = 0: until converged, per lambda). The temperature schedule spans the whole
training, so more steps is a different (slower) anneal, not more of the same; the paper used about
63 on its code tasks, 161 on IOI and 408 on SVA. Every lambda trains at ``min_steps`` (30), then at
twice as many, and so on up to ``max_steps`` (120); a lambda leaves the ladder at the first schedule
whose chosen circuit *agrees* with the previous schedule's on the train prompts (size within 10% or
2 nodes, train F within 0.02: :data:`AGREE_SIZE`, :data:`AGREE_F`), and that schedule's circuit is
kept; the lambdas still training share the next schedule's batched forwards. (Version 3 asked every
lambda to agree at once; on dict seed 0 seven of twelve lambdas agreed at 60 steps and the other
five made all twelve train again at 120: 132 of the ladder's 231 steps per restart.) Each circuit's params say the
schedules its lambda tried and whether it converged or stopped at ``max_steps``. A positive
``steps`` pins the schedule (no ladder). The quick run pins 20 steps and one restart.

Options beyond the paper: ``granularity="latent"`` (one entry per latent, shared by positions)
and ``loss="per_prompt"`` (mean of per-prompt absolute errors, so errors cannot cancel).

The seed notebook's running mean of corrupted latents divided by the batch index instead of the
prompt count; here the replacement is the true mean (computed by the harness).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch

from bench.api import Circuit, CircuitSet, Method, MethodConfig, MethodContext
from bench.model.masked import run_group_masked, stacked_logit_diff

SWEEPS = ("batched", "sequential")
# Trace of each mask, one value per logged step: the step (updates done), the temperature, the task-loss
# term and the sparsity term of the soft mask on that step's batch, the binarised circuit's size among
# the train candidates, its task loss on the same batch, and how many nodes changed state since the
# previous point.
TRACE = ("step", "temperature", "task_loss", "sparsity", "n_nodes", "task_loss_binarised", "n_changed")


FIXED_RANGE = (0.001, 3.0)  # the log grid's range when adaptive=False and no range is given


@dataclass(frozen=True)
class BinaryMaskConfig(MethodConfig):
    lambdas: tuple[float, ...] = ()  # explicit grid (overrides everything below)
    spacing: str = "log"  # "log": geometric lambda_min..lambda_max; "quadratic": lambda_max * (i/n)**2
    lambda_min: float = 0.0  # 0 = not given: the probe finds it (adaptive) or FIXED_RANGE[0]
    lambda_max: float = 0.0  # 0 = not given: the probe finds it (adaptive) or FIXED_RANGE[1]
    adaptive: bool = True  # probe the range (and, for log spacing, place lambdas by circuit size); module doc
    n_lambdas: int = 12
    steps: int = 0  # 0 = until converged on train: min_steps, doubled up to max_steps (module doc, "Steps")
    min_steps: int = 30
    max_steps: int = 120
    lr: float = 1.0
    lrs: tuple[float, ...] = ()  # restart r trains at lrs[r % len(lrs)]; () = (lr, lr / 10) (module doc, "Restarts")
    restarts: int = 2  # masks per lambda, the one chosen on train kept
    init_noise: float = 0.5  # restarts r >= 1 start from logits 1 + init_noise * N(0, 1)
    judge_prompts: int = 64  # train prompts the restarts and the convergence check are judged on
    batch_size: int = 16
    granularity: str = "position"
    loss: str = "batch_mean"
    sweep: str = "batched"  # "batched": all lambdas share one forward/backward per step; "sequential": one at a time
    max_rows: int = 256  # batched: at most this many prompt rows per forward (lambdas are chunked); 0 = no limit
    n_log: int = 10  # trace points spread over training, plus the final step; 0 = no trace
    probe_min: float = 1e-6  # the probe's ladder: one lambda per decade from probe_min up to probe_max
    probe_max: float = 100.0  # (extended upwards, a decade at a time, while its top circuit is non-empty)
    probe_steps: int = 10  # steps of each probe mask (its temperature schedule is compressed to match)

    def __post_init__(self) -> None:
        if self.granularity not in ("position", "latent"):
            raise ValueError(f"granularity must be 'position' or 'latent', got {self.granularity!r}")
        if self.loss not in ("batch_mean", "per_prompt"):
            raise ValueError(f"loss must be 'batch_mean' or 'per_prompt', got {self.loss!r}")
        if self.steps < 0 or self.n_lambdas < 1 or self.batch_size < 1 or self.probe_steps < 1:
            raise ValueError("n_lambdas, batch_size and probe_steps must be positive, steps >= 0 (0 = until converged)")
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError(f"need 1 <= min_steps <= max_steps, got {self.min_steps} and {self.max_steps}")
        if self.restarts < 1 or self.judge_prompts < 1 or self.init_noise < 0:
            raise ValueError("restarts and judge_prompts must be >= 1, init_noise >= 0")
        if any(lr <= 0 for lr in self.lrs) or self.lr <= 0:
            raise ValueError("learning rates must be > 0")
        if self.lambda_min < 0 or self.lambda_max < 0 or (self.lambda_min and self.lambda_max and self.lambda_min > self.lambda_max):
            raise ValueError("need 0 <= lambda_min <= lambda_max (0 = not given)")
        if self.spacing not in ("log", "quadratic"):
            raise ValueError(f"spacing must be 'log' or 'quadratic', got {self.spacing!r}")
        if self.spacing == "log" and self.adaptive and bool(self.lambda_min) != bool(self.lambda_max):
            raise ValueError("give both lambda_min and lambda_max (a fixed range) or neither (the adaptive range)")
        if any(lam < 0 for lam in self.lambdas):
            raise ValueError("lambdas must be >= 0")
        if self.sweep not in SWEEPS:
            raise ValueError(f"sweep must be one of {SWEEPS}, got {self.sweep!r}")
        if self.max_rows < 0 or self.n_log < 0:
            raise ValueError("max_rows and n_log must be >= 0")
        if not 0 < self.probe_min < self.probe_max:
            raise ValueError("need 0 < probe_min < probe_max")

    @property
    def uses_probe(self) -> bool:
        """True when the grid comes from the probe: no explicit lambdas and no range given."""
        if self.lambdas or not self.adaptive:
            return False
        return not self.lambda_max if self.spacing == "quadratic" else not (self.lambda_min or self.lambda_max)

    def grid(self) -> list[float]:
        """The lambda grid without a probe: explicit ``lambdas`` or the configured (or fixed) range."""
        if self.lambdas:
            return [float(lam) for lam in self.lambdas]
        lo, hi = self.lambda_min or FIXED_RANGE[0], self.lambda_max or FIXED_RANGE[1]
        return spaced(self.spacing, lo, hi, self.n_lambdas)

    def step_ladder(self) -> list[int]:
        """The schedules tried, in order: ``steps`` alone, or min_steps doubled while <= max_steps."""
        if self.steps:
            return [self.steps]
        out = [self.min_steps]
        while out[-1] * 2 <= self.max_steps:
            out.append(out[-1] * 2)
        return out

    def restart_lr(self, r: int) -> float:
        lrs = self.lrs or (self.lr, self.lr / 10)
        return lrs[r % len(lrs)]

    def probe_ladder(self) -> list[float]:
        n = max(1, round(math.log10(self.probe_max / self.probe_min)))
        return [_round(self.probe_min * (self.probe_max / self.probe_min) ** (i / n)) for i in range(n + 1)]


def spaced(spacing: str, lo: float, hi: float, n: int) -> list[float]:
    if spacing == "quadratic":
        return [hi * (i / n) ** 2 for i in range(1, n + 1)]
    if n == 1:
        return [hi]
    return [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]


def _round(lam: float) -> float:
    """Four significant digits: probe-derived lambdas (and so their seeds) read the same everywhere."""
    return float(f"{lam:.4g}")


def lambda_seed(seed: int, lam: float, salt: str = "") -> int:
    """The generator seed of the mask at ``lam``: a stable hash of (seed, lambda), not of its index."""
    digest = hashlib.sha256(f"{salt}{seed}:{float(lam)!r}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def batch_schedule(g: torch.Generator, n: int, batch_size: int, total: int) -> list[torch.Tensor]:
    """Train-prompt indices of each step: walk a random permutation, reshuffle when it runs out."""
    order, cursor, out = torch.randperm(n, generator=g), 0, []
    for _ in range(total):
        if cursor + batch_size > n:
            order, cursor = torch.randperm(n, generator=g), 0
        out.append(order[cursor : cursor + batch_size])
        cursor += batch_size
    return out


def temperature(i: int, steps: int) -> float:
    return 200 ** (1.1 * i / steps)


def log_steps(total: int, n_log: int) -> list[int]:
    """``n_log`` states spread over training plus the final one (step t = after t updates)."""
    if n_log <= 0:
        return []
    return sorted({round(k * total / n_log) for k in range(n_log)} | {total})




@dataclass
class Fitted:
    """One lambda's chosen mask: final logits per site, its trace, and how it was chosen."""

    logits: dict[str, torch.Tensor]
    trace: dict[str, list[float]]
    params: dict


# Two schedules "agree" (the step ladder has converged) when, for every lambda, the chosen circuits'
# sizes differ by at most this share (or 2 nodes) and their train F by at most this much.
AGREE_SIZE, AGREE_F = 0.1, 0.02


def _agree(a: Fitted, b: Fitted) -> bool:
    na, nb = a.params["nodes_judge"], b.params["nodes_judge"]
    return abs(na - nb) <= max(2, AGREE_SIZE * max(na, nb)) and abs(a.params["F_judge"] - b.params["F_judge"]) <= AGREE_F


class Judge:
    """The mask's own objective on the first ``n`` train prompts, for binarised circuits:
    ``|mean LD_ref - mean LD(C)| + lambda * mean over SAEs of C's nodes`` (the training loss at
    infinite temperature, on more prompts than a batch; with ``loss="per_prompt"`` the task term is
    the mean of the per-prompt absolute errors, as in training), and F = (LD(C) - LD(∅)) / (LD_ref - LD(∅))
    on the same prompts."""

    def __init__(self, ctx: MethodContext, ld_ref: torch.Tensor, n: int, loss: str = "batch_mean"):
        self.ctx, self.loss = ctx, loss
        self.data = ctx.train.subset(list(range(min(n, len(ctx.train)))))
        self.ref_pp = ld_ref[: len(self.data)].float().cpu()
        self.ref = float(self.ref_pp.mean())
        empty = {s: torch.zeros_like(c, dtype=torch.bool) for s, c in ctx.candidates.items()}
        self.empty = float(self._ld([empty])[0].mean())

    def _ld(self, keeps: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Per-prompt logit differences ``[len(keeps), n]``."""
        with torch.no_grad():
            return stacked_logit_diff(self.ctx.spliced, self.data, keeps, self.ctx.replacement)

    def size(self, keep: dict[str, torch.Tensor]) -> int:
        return int(sum((keep[s].cpu() & c.cpu()).sum() for s, c in self.ctx.candidates.items()))

    def objectives(self, keeps: list[dict[str, torch.Tensor]], lams: list[float],
                   per_sae: list[float]) -> list[tuple[float, float]]:
        """(objective, F) of binarised circuits ``keeps`` (bool ``[pos, d_sae]`` per site), in one
        stacked evaluation; ``per_sae`` is each one's sparsity term (mean over SAEs of the mask
        entries kept, every entry counted as the training loss counts them)."""
        out = []
        for lam, ld_pp, sp in zip(lams, self._ld(keeps), per_sae):
            ld = float(ld_pp.mean())
            f = (ld - self.empty) / (self.ref - self.empty) if self.ref != self.empty else float("nan")
            # The task-loss term as the mask was trained on it: |mean error| or the mean of |errors|.
            task = abs(self.ref - ld) if self.loss == "batch_mean" else float((self.ref_pp - ld_pp).abs().mean())
            out.append((task + lam * sp, f))
        return out


class BinaryMask(Method):
    name = "binary_mask"
    version = "4"
    kind = "circuits"
    Config = BinaryMaskConfig
    quick_overrides = {"n_lambdas": 6, "steps": 20, "probe_steps": 5, "restarts": 1}

    def discover(self, ctx: MethodContext) -> CircuitSet:
        cfg = self.config
        with torch.no_grad():
            ld_ref = torch.cat([ctx.metric(ctx.spliced.run(b.clean), b) for _, b in ctx.train.batches(64)])
        if cfg.uses_probe:
            grid, predicted = self.adaptive_grid(ctx, ld_ref)
        else:
            grid, predicted = cfg.grid(), {}
        judge = Judge(ctx, ld_ref, cfg.judge_prompts, cfg.loss)
        results, _ = self.fit(ctx, grid, ld_ref, judge)
        if cfg.uses_probe:
            grid, results = self.repair_empty(ctx, grid, results, ld_ref, judge)
        circuits = []
        for lam, fitted in zip(grid, results):
            params = {"lambda": lam, **({"probe_nodes": predicted[lam]} if lam in predicted else {}), **fitted.params}
            circuits.append(Circuit(self.binarise(ctx, fitted.logits), params, scores=self.as_scores(ctx, fitted.logits),
                                    trace=fitted.trace))
        return CircuitSet(circuits)

    # ----- restarts and steps, chosen on train ------------------------------------------------
    def fit(self, ctx: MethodContext, lambdas: list[float], ld_ref: torch.Tensor, judge: Judge,
            steps: int | None = None) -> tuple[list[Fitted], int]:
        """Per lambda the best restart on train, at the first schedule of the step ladder whose
        circuit agrees with the previous schedule's *for that lambda* (module doc, "Steps"): a
        lambda that has converged leaves the ladder and only the others train at the next schedule.
        ``steps`` pins the schedule. Returns the fitted masks (in ``lambdas`` order) and the
        largest schedule any lambda kept."""
        ladder = [steps] if steps else self.config.step_ladder()
        done: dict[int, Fitted] = {}
        prev: dict[int, Fitted] = {}
        tried: dict[int, list[int]] = {j: [] for j in range(len(lambdas))}
        for i, S in enumerate(ladder):
            active = [j for j in range(len(lambdas)) if j not in done]
            cur = dict(zip(active, self.best_restarts(ctx, [lambdas[j] for j in active], ld_ref, judge, S)))
            last = i + 1 == len(ladder)
            for j, f in cur.items():
                tried[j].append(S)
                converged = j in prev and _agree(prev[j], f)
                if converged or last:
                    f.params.update({"steps_tried": list(tried[j]),
                                     "steps_state": "pinned" if len(ladder) == 1 else ("converged" if converged else "max_steps")})
                    done[j] = f
            prev = cur
            if len(done) == len(lambdas):
                break
        out = [done[j] for j in range(len(lambdas))]
        return out, max((f.params["steps"] for f in out), default=ladder[-1])

    def best_restarts(self, ctx: MethodContext, lambdas: list[float], ld_ref: torch.Tensor, judge: Judge,
                      steps: int) -> list[Fitted]:
        """Train ``restarts`` masks per lambda (init noise, batch order, learning rate) and keep,
        per lambda, the one with the lowest objective on the judge's train prompts."""
        cfg = self.config
        runs = [self.sweep(ctx, lambdas, ld_ref, steps=steps, restart=r) for r in range(cfg.restarts)]
        keeps = [[self.binarise(ctx, logits) for logits, _ in res] for res in runs]  # [restart][lambda]
        kept = [sum(int((m > 0).sum()) for m in logits.values()) / len(logits) for res in runs for logits, _ in res]
        judged = judge.objectives([k for ks in keeps for k in ks], list(lambdas) * len(runs), kept)
        out = []
        for j in range(len(lambdas)):
            scored = [(judged[r * len(lambdas) + j], r, *runs[r][j], keeps[r][j]) for r in range(len(runs))]
            best = min(scored, key=lambda x: (x[0][0], x[1]))
            (obj, f_train), r, logits, trace, keep = best
            out.append(Fitted(logits, trace, {
                "restart": r, "lr": cfg.restart_lr(r), "steps": steps, "restarts": cfg.restarts,
                "objective_train": round(obj, 6), "F_judge": round(f_train, 6),
                "objective_restarts": [round(x[0][0], 6) for x in scored],
                "nodes_judge": judge.size(keep)}))
        return out

    # ----- the sweep --------------------------------------------------------------------------
    def sweep(self, ctx: MethodContext, lambdas: list[float], ld_ref: torch.Tensor, steps: int | None = None,
              salt: str = "", n_log: int | None = None,
              restart: int = 0) -> list[tuple[dict[str, torch.Tensor], dict[str, list[float]]]]:
        """Train one mask per lambda; returns (final logits per site, trace) per lambda, in order."""
        cfg = self.config
        steps = cfg.step_ladder()[0] if steps is None else steps
        n_log = cfg.n_log if n_log is None else n_log
        rows = min(cfg.batch_size, len(ctx.train))
        if cfg.sweep == "sequential":
            size = 1
        else:
            size = len(lambdas) if cfg.max_rows == 0 else max(1, cfg.max_rows // rows)
        out = []
        for i in range(0, len(lambdas), size):
            out += self.train_group(ctx, lambdas[i : i + size], ld_ref, steps, salt, n_log, restart)
        return out

    def train_group(self, ctx: MethodContext, lambdas: list[float], ld_ref: torch.Tensor, steps: int, salt: str = "",
                    n_log: int = 0, restart: int = 0) -> list[tuple[dict[str, torch.Tensor], dict[str, list[float]]]]:
        """Train the masks of ``lambdas`` together: their batches share one forward and one backward.

        Restart 0 starts every logit at 1; restart r >= 1 adds ``init_noise`` * N(0, 1) drawn from
        its own generator per lambda, and salts its batch order apart."""
        cfg = self.config
        dev = ctx.spliced.device
        L, n = len(lambdas), len(ctx.train)
        per_pos = cfg.granularity == "position"
        salt = f"restart{restart}:{salt}" if restart else salt
        logits_m = {}
        for s in ctx.sites:
            shape = (ctx.train.n_pos, ctx.spliced.d_sae(s)) if per_pos else (ctx.spliced.d_sae(s),)
            init = torch.ones((L, *shape))
            if restart and cfg.init_noise:
                for j, lam in enumerate(lambdas):
                    g = torch.Generator().manual_seed(lambda_seed(ctx.seed, lam, f"init:{s}:{salt}"))
                    init[j] += cfg.init_noise * torch.randn(shape, generator=g)
            logits_m[s] = init.to(dev).requires_grad_(True)
        opt = torch.optim.Adam(logits_m.values(), lr=cfg.restart_lr(restart))
        total = round(1.1 * steps)
        # Each lambda draws its batches from its own generator, exactly as it would alone.
        schedules = [batch_schedule(torch.Generator().manual_seed(lambda_seed(ctx.seed, lam, salt)), n, cfg.batch_size, total)
                     for lam in lambdas]
        lam_t = torch.tensor(lambdas, device=dev, dtype=torch.float32)
        logged = set(log_steps(total, n_log))
        traces = [{k: [] for k in TRACE} for _ in lambdas]
        idx, prev = None, None
        for i in range(total):
            idx = torch.cat([sch[i] for sch in schedules])
            temp = temperature(i, steps)
            soft = {s: torch.sigmoid(temp * m) for s, m in logits_m.items()}
            faith, sparsity = self._losses(ctx, soft, idx, ld_ref, L)
            loss = (faith + lam_t * sparsity).sum()
            if i in logged:
                prev = self._log(ctx, traces, i, temp, faith.detach(), sparsity.detach(), logits_m, idx, ld_ref, L, prev)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if total in logged:  # the final state: one forward for the soft mask, one for the binarised
            temp = temperature(total, steps)
            with torch.no_grad():
                soft = {s: torch.sigmoid(temp * m) for s, m in logits_m.items()}
                faith, sparsity = self._losses(ctx, soft, idx, ld_ref, L)
            self._log(ctx, traces, total, temp, faith, sparsity, logits_m, idx, ld_ref, L, prev)
        return [({s: m[j].detach().cpu().clone() for s, m in logits_m.items()}, traces[j] if n_log else {})
                for j in range(L)]

    def _losses(self, ctx: MethodContext, masks: dict[str, torch.Tensor], idx: torch.Tensor, ld_ref: torch.Tensor,
                L: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-lambda task-loss term ``[L]`` and sparsity term ``[L]`` of one step's concatenated batch."""
        batch = ctx.train.subset(idx)
        repl = ctx.replacement.index(idx)
        prefix = ctx.train_prefix()
        inputs = prefix.index(idx) if prefix is not None else batch.clean
        ld = ctx.metric(run_group_masked(ctx.spliced, inputs, masks, repl, L), batch).view(L, -1)
        ref = ld_ref[idx.to(ld_ref.device)].view(L, -1)
        if self.config.loss == "per_prompt":
            faith = (ref - ld).abs().mean(1)
        else:
            faith = (ref.mean(1) - ld.mean(1)).abs()
        if masks[ctx.sites[0]].dtype == torch.bool:
            return faith, torch.zeros_like(faith)
        sparsity = torch.stack([m.flatten(1).sum(1) for m in masks.values()]).mean(0)
        return faith, sparsity

    def _log(self, ctx, traces, step, temp, faith, sparsity, logits_m, idx, ld_ref, L, prev):
        """Append one trace point per lambda; returns the binarised masks (``prev`` of the next point)."""
        keep = {s: m.detach() > 0 for s, m in logits_m.items()}
        with torch.no_grad():
            faith_bin, _ = self._losses(ctx, keep, idx, ld_ref, L)  # the one extra forward of a log point
        counts = sum(self._count(ctx, s, k) for s, k in keep.items())
        prev = keep if prev is None else prev
        changed = sum(self._count(ctx, s, k ^ prev[s]) for s, k in keep.items())
        for j, tr in enumerate(traces):
            tr["step"].append(float(step))
            tr["temperature"].append(float(temp))
            tr["task_loss"].append(float(faith[j]))
            tr["sparsity"].append(float(sparsity[j]))
            tr["n_nodes"].append(float(counts[j]))
            tr["task_loss_binarised"].append(float(faith_bin[j]))
            tr["n_changed"].append(float(changed[j]))
        return keep

    def _count(self, ctx: MethodContext, site: str, keep: torch.Tensor) -> torch.Tensor:
        """Binarised nodes among the train candidates, per lambda ``[L]``."""
        cand = ctx.candidates[site].to(keep.device)
        k = keep if keep.dim() == 3 else keep[:, None, :]
        return (k & cand).flatten(1).sum(1)

    # ----- outputs ----------------------------------------------------------------------------
    def binarise(self, ctx: MethodContext, logits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {s: (m > 0) if m.dim() == 2 else (m > 0).unsqueeze(0).expand(ctx.train.n_pos, -1).clone()
                for s, m in logits.items()}

    def as_scores(self, ctx: MethodContext, logits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {s: m.float() if m.dim() == 2 else m.float().unsqueeze(0).expand(ctx.train.n_pos, -1).clone()
                for s, m in logits.items()}

    def n_nodes(self, ctx: MethodContext, logits: dict[str, torch.Tensor]) -> int:
        """Binarised nodes among the train candidates."""
        return int(sum((m & ctx.candidates[s].cpu()).sum() for s, m in self.binarise(ctx, logits).items()))

    # ----- the adaptive range -----------------------------------------------------------------
    def probe(self, ctx: MethodContext, lambdas: list[float], ld_ref: torch.Tensor) -> dict[float, int]:
        """Circuit size of a short mask (``probe_steps``) at each lambda, seeds salted apart from the sweep's."""
        res = self.sweep(ctx, lambdas, ld_ref, steps=self.config.probe_steps, salt="probe:", n_log=0)
        return {lam: self.n_nodes(ctx, logits) for lam, (logits, _) in zip(lambdas, res)}

    def adaptive_grid(self, ctx: MethodContext, ld_ref: torch.Tensor) -> tuple[list[float], dict[float, float]]:
        """The grid from the probe (module doc); also each lambda's probe-predicted size."""
        cfg = self.config
        counts = self.probe(ctx, cfg.probe_ladder(), ld_ref)
        for _ in range(4):  # extend upwards until the top circuit is empty
            top = max(counts)
            if counts[top] == 0:
                break
            counts.update(self.probe(ctx, [_round(top * 10)], ld_ref))
        nonempty = [lam for lam, n in counts.items() if n > 0]
        if not nonempty:  # nothing survives even the smallest lambda: fall back to the fixed range
            return spaced(cfg.spacing, *FIXED_RANGE, cfg.n_lambdas), {}
        last = max(nonempty)
        above = [lam for lam in counts if lam > last]
        if above:  # refine the edge of emptiness to a quarter decade
            nxt = min(above)
            counts.update(self.probe(ctx, [_round(last * (nxt / last) ** (k / 4)) for k in (1, 2, 3)], ld_ref))
        # The top of the grid: the second-largest non-empty probe lambda. The largest sits at the edge,
        # where the full-length training tends to remove the last few nodes the short probe kept.
        nonempty = sorted(lam for lam, n in counts.items() if n > 0)
        last = nonempty[-2] if len(nonempty) > 1 else nonempty[-1]
        if cfg.spacing == "quadratic":
            return [_round(lam) for lam in spaced("quadratic", 0.0, last, cfg.n_lambdas)], {}
        # Monotone envelope of size vs lambda (sizes fall as lambda grows), up to the last non-empty point.
        lams = sorted(lam for lam in counts if lam <= last)
        env, low = [], math.inf
        for lam in lams:
            low = min(low, counts[lam])
            env.append(max(low, 1))
        n_hi, n_lo = env[0], env[-1]
        if n_hi <= n_lo or cfg.n_lambdas == 1:
            grid = spaced("log", lams[0], last, cfg.n_lambdas)
            return sorted({_round(lam) for lam in grid}), {}
        targets = [n_lo * (n_hi / n_lo) ** (k / (cfg.n_lambdas - 1)) for k in range(cfg.n_lambdas)]
        predicted = {}
        for t in targets:
            predicted.setdefault(_round(_interp(t, lams, env)), round(t, 1))
        return sorted(predicted), predicted

    def repair_empty(self, ctx, grid, results, ld_ref, judge, tries: int = 3):
        """Adaptive grid only: retrain an empty circuit a quarter decade lower (at most ``tries`` times),
        at the schedule its lambda settled on, its restarts judged the same way."""
        grid, results = list(grid), list(results)
        for _ in range(tries):
            empty = [j for j, f in enumerate(results) if self.n_nodes(ctx, f.logits) == 0]
            if not empty:
                break
            by_steps: dict[int, list[int]] = {}
            for j in empty:
                by_steps.setdefault(int(results[j].params["steps"]), []).append(j)
            for S, js in sorted(by_steps.items()):
                lower = [_round(grid[j] * 10 ** -0.25) for j in js]
                redo, _ = self.fit(ctx, lower, ld_ref, judge, S)
                for j, lam, f in zip(js, lower, redo):
                    # trained once at its predecessor's schedule, with no convergence check of its own
                    f.params.update({"steps_state": "repaired", "steps_tried": [S], "repaired_from": grid[j]})
                    grid[j], results[j] = lam, f
        order = sorted(range(len(grid)), key=lambda j: grid[j])
        return [grid[j] for j in order], [results[j] for j in order]


def _interp(target: float, lams: list[float], sizes: list[float]) -> float:
    """The largest lambda at which the (non-increasing) size curve is still >= ``target``, linear in log-log."""
    if sizes[-1] >= target:
        return lams[-1]
    for i in range(len(lams) - 2, -1, -1):
        (l0, n0), (l1, n1) = (lams[i], sizes[i]), (lams[i + 1], sizes[i + 1])
        if n0 >= target > n1:
            f = (math.log(n0) - math.log(target)) / (math.log(n0) - math.log(n1))
            return math.exp(math.log(l0) + f * (math.log(l1) - math.log(l0)))
    return lams[0]
