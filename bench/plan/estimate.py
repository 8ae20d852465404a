"""``bench plan``: predicted peak memory and compute of every method, from the architecture alone.

No weights are read and nothing is fetched. The plan builds the preset's model and SAEs on PyTorch's
``meta`` device (tensors with shapes and dtypes but no storage), runs each method's own code on it
at the run's settings, and counts, with a dispatch mode (:mod:`bench.plan.simulate`), the bytes of every tensor
storage alive after each operation. The largest count is the predicted peak of tensor memory (what
``torch.cuda.max_memory_allocated`` reports on a GPU, or the resident memory above the loaded model
on a CPU). ``torch.utils.flop_counter`` counts the matmul FLOPs of the same runs.

So "what TransformerLens stores for a block" is not a hand-written formula that goes stale: it is
whatever TL 3.9 and this suite's code actually keep, read off the run. In words (Gemma-2, per block
whose output reaches a gradient, i.e. from the first SAE site on): the residual and its norm scales
(several ``[tokens, d_model]``), q/k/v after rotary (``[tokens, heads, d_head]``, k/v expanded to all
heads), attention scores, soft-cap and pattern (``[batch, heads, pos, pos]``, each a few times), the
gated MLP's hidden (three ``[tokens, d_mlp]``), and **a transposed copy of every weight matrix of the
block**: TL 3.9 computes ``F.linear(x, W.T.contiguous())`` (gated MLP, attention, unembed) and
autograd keeps the copy for the backward pass. With frozen weights that copy is a second model's worth
of memory for every layer from the first SAE site to the unembed (Gemma-2-9B fp32: 31 GB). Logits are
modelled as the code computes them (last position only, when ``SplicedModel.run`` returns
``[batch, 1, vocab]``); the other mode is run too, for comparison. Optimizer state (Adam: two moments
and a gradient per mask entry) and captum's expanded IG inputs are counted the same way, by running
the code.

The model: ``peak = static + resident + working`` where static is the model's parameters and buffers
(TL's layout: ``W_U`` is stored apart from ``W_E``) plus the SAEs', resident is what a task keeps
between methods (replacement latents, candidate masks), and working is the tracked peak of one
method's run. ``benchmarks/plan_validation.py`` measures working memory of the real methods on random
weights on the CPU and compares (``benchmarks/plan_validation.json``).

Compute: FLOPs of the dominant passes, multiplied by how often the method repeats them at the run's
settings (batches, lambda-steps, candidate chunks); seconds at a stated sustained throughput
(``--tflops``; matmuls only: elementwise work, softmax and the SAE nonlinearity are not counted).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from dataclasses import dataclass, field

from bench.errors import UsageError
from bench.plan.arch import FAMILIES, Arch, build_meta
from bench.plan.contexts import fresh_state, make_context  # noqa: F401 - where callers find make_context
from bench.plan.edges import EDGE_MODELLED, edge_evaluator_fn, simulate_edge_method
from bench.plan.simulate import Sim, simulate

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# Sustained matmul throughput assumed for seconds (TFLOP/s), per dtype: an H100-class GPU at ~70% of
# its dense fp32 (non-tensor-core) peak and ~40% of its dense bf16 tensor-core peak.
DEFAULT_TFLOPS = {"float32": 50.0, "bfloat16": 400.0, "float16": 400.0}
DEFAULT_SEQ_LEN = 40  # about the longest default task prompt (dict_keyerror) under a Gemma-like tokenizer
DEFAULT_CANDIDATES_PER_POS = 1000  # exact patching: candidate latents per (site, position); a stated assumption
GPU_RESERVE_GIB = 1.0  # CUDA context, cuBLAS workspace
GPU_FRAGMENTATION = 0.05  # caching-allocator slack on top of the tensor peak

MODELLED = ("binary_mask", "attribution_patching", "integrated_gradients", "activation_patching",
            "activation_magnitude", "random", "greedy")


# ----- settings and contexts ----------------------------------------------------------------------

@dataclass
class Settings:
    n_train: int
    n_test: int
    seq_len: int = DEFAULT_SEQ_LEN
    dtype: str = "float32"
    error_policy: str = "drop"
    ablation: str = "mean"
    max_rows: int = 1024  # the evaluator's rows per forward
    grid_per_decade: int = 5
    n_knockout: int = 8
    n_headline: int = 4
    n_train_eval: int = 64  # train prompts the evaluator measures train F on
    edge_max_nodes: int = 48  # the edge universe's node cap (an edge method's plan assumes a universe this big)
    candidates_per_pos: int = DEFAULT_CANDIDATES_PER_POS
    methods: tuple[str, ...] = MODELLED
    method_options: dict = field(default_factory=dict)
    gpu_memory_gib: float = 80.0
    tflops: float | None = None
    logits: str = "code"  # "code": as SplicedModel computes them; "all" / "last": forced
    # also simulate every method with the logits the other way (the "peak if logits at ..." column):
    # twice the simulation time, so asked for (--compare-logits), not the default
    compare_logits: bool = False

    def __post_init__(self) -> None:
        """One line for what the plan cannot do, before anything is built."""
        check_methods(self.methods)
        if self.edge_max_nodes < 2:
            raise UsageError(f"--edge-max-nodes must be at least 2 (an edge needs two nodes), got {self.edge_max_nodes}")

    @classmethod
    def defaults(cls, **kw) -> Settings:
        from bench.run.config import RunConfig

        rc = RunConfig()
        base = dict(n_train=rc.n_train, n_test=rc.n_test, max_rows=getattr(rc, "max_rows", 1024),
                    error_policy=rc.error_policy, ablation=rc.ablation, grid_per_decade=rc.grid_per_decade,
                    n_knockout=rc.n_knockout, n_headline=len(rc.headline_targets), edge_max_nodes=rc.edge_max_nodes,
                    n_train_eval=rc.n_train_eval)
        base.update({k: v for k, v in kw.items() if v is not None})
        return cls(**base)

    @property
    def throughput(self) -> float:
        return (self.tflops or DEFAULT_TFLOPS[self.dtype]) * 1e12


def method_instance(name: str, options: dict):
    from bench.run.config import RunConfig
    from bench.run.setup import build_method

    return build_method(name, RunConfig(method_options={name: options} if options else {}))


@contextlib.contextmanager
def logits_mode(sp, mode: str):
    """Force the unembedding onto all positions or the last one, whatever ``SplicedModel`` does."""
    if mode == "code":
        yield
        return
    model = sp.model
    if mode == "all" and not hasattr(sp, "all_position_logits"):
        if code_logits_mode() != "all":
            raise RuntimeError("cannot force all-position logits: SplicedModel has no all_position_logits switch")
        yield
        return
    if mode == "all":  # the model's own head, on every position
        sp.all_position_logits = True
        try:
            yield
        finally:
            sp.all_position_logits = False
        return
    if mode == "last":
        h = model.unembed.register_forward_pre_hook(lambda mod, args: (args[0][:, -1:],))
        try:
            yield
        finally:
            h.remove()
        return
    yield


def code_logits_mode() -> str:
    """'last' if ``SplicedModel.run`` returns last-position logits ``[batch, 1, vocab]``, else 'all'."""
    import torch

    arch = Arch("probe", dict(FAMILIES["gpt2"], n_layers=1, d_model=8, d_mlp=16, n_heads=2, d_head=4, d_vocab=11,
                              n_ctx=8), [("blocks.0.hook_resid_post", {"architecture": "standard", "d_sae": 8})], "probe")
    sp = build_meta(arch)
    with torch.no_grad():
        out = sp.run(torch.zeros(1, 3, dtype=torch.long))
    return "last" if out.shape[1] == 1 else "all"


# ----- per-method plans ---------------------------------------------------------------------------

@dataclass
class MethodPlan:
    method: str
    rows: int  # prompt rows of the dominant pass
    grad: bool
    working: int  # bytes above static + resident
    breakdown: dict[str, int]
    working_alt: int | None  # the other logits mode
    flops: float  # the method's discover, at the run's settings
    eval_flops: float  # the evaluator's work for this method's cell
    notes: str = ""
    unit: str = "nodes"  # what the method's circuits are made of: nodes, or edges between them

    def total(self, static: int, resident: int) -> int:
        return static + resident + self.working


def _first_site_blocks(sp) -> int:
    def start(site: str) -> int:  # the first block whose input depends on the site's latents
        m = re.fullmatch(r"blocks\.(\d+)\.hook_resid_(pre|post)", site)
        return 0 if m is None else int(m.group(1)) + (m.group(2) == "post")

    return sp.model.cfg.n_layers - min(start(s) for s in sp.sites)


def plan_method(sp, st: Settings, name: str, alt_mode: str | None) -> MethodPlan:
    """Simulate ``name`` at the settings; FLOPs scaled to the full run."""
    method = method_instance(name, st.method_options.get(name, {}))
    cfg = method.config
    n, P = st.n_train, st.seq_len

    def run_sim(mode: str, full: bool) -> tuple[Sim, dict]:
        with logits_mode(sp, mode):
            sp.__dict__["_plan_mode"] = mode
            try:
                return _sim_one(sp, st, name, method, cfg, n, P, full)
            finally:
                sp.__dict__.pop("_plan_mode", None)

    sim, info = run_sim(st.logits, True)
    if alt_mode:
        fresh_state(sp)  # the other logits mode pays for its own train prefix too
    alt = run_sim(alt_mode, False)[0].peak if alt_mode else None
    return MethodPlan(name, info["rows"], info["grad"], sim.peak, sim.breakdown, alt, info["flops"](sim),
                      0.0, info.get("notes", ""), unit=getattr(method, "unit", "nodes"))


def _sim_one(sp, st: Settings, name: str, method, cfg, n: int, P: int, full: bool = True):
    """One method's dominant computation under the tracker; ``full``: also count FLOPs (and their units).

    Memoised per model: greedy's pool runs attribution patching exactly as the method itself does
    (same options), and that simulation is not repeated in one process (forked workers each run
    their own; the result is the same)."""
    memo = sp.__dict__.setdefault("_plan_sims", {})
    # repr, not the config itself: a config may hold a list (e.g. the mask's lambdas from a caller);
    # every setting but the method list (the same simulation serves any plan it is part of)
    key = (name, type(cfg).__qualname__, repr(cfg), n, P, full, sp.__dict__.get("_plan_mode", "code"),
           repr(dataclasses.replace(st, methods=())))
    if key not in memo:
        memo[key] = _simulate_method(sp, st, name, method, cfg, n, P, full)
    return memo[key]


def _simulate_method(sp, st: Settings, name: str, method, cfg, n: int, P: int, full: bool = True):
    import torch

    if name in EDGE_MODELLED:
        return simulate_edge_method(sp, st, name, method, cfg, n, full)
    S = {s: sp.d_sae(s) for s in sp.sites}

    def tracked(sp, fn, **kw):
        return simulate(sp, fn, flops=full, **kw)

    if name == "attribution_patching":
        bs = min(cfg.batch_size, n)
        ctx = make_context(sp, st, bs)
        sim = tracked(sp, lambda: method.discover(ctx))
        return sim, {"rows": bs, "grad": True, "flops": lambda s: s.flops * math.ceil(n / bs)}
    if name == "integrated_gradients":
        b = min(cfg.batch_size, n)
        ctx = make_context(sp, st, b)
        # The step ladder's worst case: memory at its largest count (simulated pinned there, as the
        # ladder's completeness check needs real numbers), FLOPs for every rung (IG's work is linear
        # in the steps; the endpoint forwards, one per SAE and batch without gradients, are not counted).
        ladder = cfg.step_ladder() if hasattr(cfg, "step_ladder") else [cfg.n_steps]
        top = ladder[-1]
        # captum runs the top rung's top*b interpolated rows in chunks of internal_batch_size, each
        # the same computation: the peak is reached by the third chunk (ig_peak_steps), so that
        # much is simulated and the FLOPs scaled by the steps it stands for; every further chunk
        # would repeat the same ops, ~8 s of Python each on the meta device for a Gemma-sized model.
        sim_steps, ibs = ig_peak_steps(cfg, b)
        pinned = type(method)(cfg, n_steps=sim_steps, internal_batch_size=ibs)
        sim = tracked(sp, lambda: pinned.discover(ctx))
        rows = min(top * b, max(b, cfg.internal_batch_size))
        return sim, {"rows": rows, "grad": True, "flops": lambda s: s.flops * math.ceil(n / b) * sum(ladder) / sim_steps,
                     "notes": f"{cfg.path}, {'+'.join(map(str, ladder))} steps{' (at most)' if len(ladder) > 1 else ''}, "
                              f"{len(sp.sites) if cfg.path == 'per_sae' else 1} path(s) per batch"}
    if name == "binary_mask":
        ctx = make_context(sp, st, n)
        grid = cfg.grid()
        # The adaptive probe trains its whole ladder together: with fewer lambdas in the grid (quick), it is the peak.
        probe_grid = cfg.probe_ladder() if getattr(cfg, "uses_probe", False) else []
        sim_grid = probe_grid if len(probe_grid) > len(grid) else grid
        ld_ref = torch.zeros(n, device=sp.device)
        rows_per = min(cfg.batch_size, n)
        group = len(sim_grid) if cfg.sweep == "batched" and cfg.max_rows == 0 else (
            1 if cfg.sweep == "sequential" else max(1, cfg.max_rows // rows_per))
        sim = tracked(sp, lambda: method.sweep(ctx, sim_grid, ld_ref, steps=2))
        # FLOPs: a lambda-step is one forward + backward of batch_size rows; a logged step adds a forward.
        unit = tracked(sp, lambda: _ap_unit(sp, ctx, rows_per)) if full else sim
        fwd = tracked(sp, lambda: _fwd_unit(sp, ctx, rows_per)) if full else sim
        # The step ladder's worst case (it runs to max_steps), every restart: an upper bound on the work.
        ladder = cfg.step_ladder() if hasattr(cfg, "step_ladder") else [cfg.steps]
        restarts = getattr(cfg, "restarts", 1)
        total = round(1.1 * ladder[-1])
        lam_steps = len(grid) * restarts * sum(round(1.1 * S) for S in ladder)
        n_logs = restarts * len(ladder) * (len({round(k * total / cfg.n_log) for k in range(cfg.n_log)} | {total}) + 1) if cfg.n_log else 0
        probe = 0
        if getattr(cfg, "uses_probe", False) and hasattr(cfg, "probe_ladder"):
            probe = len(cfg.probe_ladder()) * round(1.1 * cfg.probe_steps)
        L = min(group, len(sim_grid))
        mask_bytes = L * (P if cfg.granularity == "position" else 1) * sum(S.values()) * 4
        notes = (f"{len(grid)} lambdas x {restarts} restarts x {'+'.join(str(round(1.1 * S)) for S in ladder)} steps (at most), {L} lambdas per forward; mask logits + grad + Adam moments "
                 f"{4 * mask_bytes / GIB:.2f} GiB (in 'SAE lat./masks')"
                 + (f", + probe {len(cfg.probe_ladder())} lambdas x {round(1.1 * cfg.probe_steps)} steps" if probe else ""))
        return sim, {"rows": L * rows_per, "grad": True, "notes": notes,
                     "flops": lambda s: unit.flops * (lam_steps + probe) + fwd.flops * (len(grid) * n_logs + math.ceil(n / 64) * 64 / rows_per)}
    if name == "activation_patching":
        m = min(cfg.max_prompts, n)
        ctx = make_context(sp, st, m)
        per_chunk = max(1, cfg.forward_batch // m)
        sim = tracked(sp, lambda: method.discover(ctx), nonzero_rows=per_chunk)
        marks = sim.nonzero_flops + [sim.flops]
        per_site = [marks[i + 1] - marks[i] for i in range(len(sp.sites))] if len(marks) > len(sp.sites) else []
        cands = min(st.candidates_per_pos, min(S.values())) * (P - 1)
        chunks = math.ceil(cands / per_chunk)
        base = marks[0] if marks else 0.0
        return sim, {"rows": per_chunk * m, "grad": False,
                     "notes": f"{cands} candidates per site (assumed {st.candidates_per_pos}/position), {chunks} chunks of {per_chunk} per site",
                     "flops": lambda s: base + sum(f * chunks for f in per_site)}
    if name == "activation_magnitude":
        bs = min(getattr(cfg, "batch_size", 64), n)
        ctx = make_context(sp, st, bs)
        sim = tracked(sp, lambda: method.discover(ctx))
        return sim, {"rows": bs, "grad": False, "flops": lambda s: s.flops * math.ceil(n / bs)}
    if name == "random":
        ctx = make_context(sp, st, 2)
        sim = tracked(sp, lambda: method.discover(ctx))
        return sim, {"rows": 0, "grad": False, "flops": lambda s: 0.0}
    if name == "greedy":
        # The pool: the three methods' own runs, as Greedy.build_pool makes them, each simulated by its branch.
        ig, atp, mag = greedy_pool_methods(cfg.batch_size)
        subs = {m.name: (m, *_sim_one(sp, st, m.name, m, m.config, n, P, full))
                for m in ((ig, atp, mag) if full else (ig, atp))}
        # The elimination: one stacked no-grad forward of max_rows (circuit, prompt) rows, like the evaluator's.
        fn, elim_rows = greedy_eliminate_fn(sp, st, cfg, n)
        elim = simulate(sp, fn, flops=False)
        parts = [(subs["integrated_gradients"][1], subs["integrated_gradients"][2]["rows"], True, "IG"),
                 (subs["attribution_patching"][1], subs["attribution_patching"][2]["rows"], True, "AtP"),
                 (elim, elim_rows, False, "elimination")]
        sim, rows, grad, where = max(parts, key=lambda p: p[0].peak)  # ties: the earlier part
        m = min(cfg.n_prompts, n)
        circuits = greedy_evaluations(cfg.pool, cfg.exact_below)
        mctx = make_context(sp, st, m)  # made outside the tracker (if not already): the row is one forward
        row = tracked(sp, lambda: _fwd_unit(sp, mctx, 1)) if full else elim

        def flops(_s):  # the pool's three runs + every evaluated circuit's forward rows
            return sum(info["flops"](s) for _m, s, info in subs.values()) + circuits * m * row.flops

        b_ig = min(ig.config.batch_size, n)
        notes = (f"pool {cfg.pool} from IG ({ig.config.n_steps} steps, batch {b_ig}) + AtP + magnitude (batch "
                 f"{min(cfg.batch_size, n)}); elimination {circuits} circuits x {m} prompts, {elim_rows} rows per "
                 f"no-grad forward; peak in {where}")
        return sim, {"rows": rows, "grad": grad, "flops": flops, "notes": notes}
    raise KeyError(name)


def ig_peak_steps(cfg, b: int) -> tuple[int, int]:
    """(n_steps, internal_batch_size) of an IG run on ``b`` prompts with the same peak memory as
    ``cfg`` at its ladder's top count. From the third internal batch on, captum holds its running
    sum and the previous batch's attributions at once, so three batches of the same rows reach the
    peak of every later one (``tests/test_budget.py`` compares with the whole run)."""
    S = cfg.step_ladder()[-1] if hasattr(cfg, "step_ladder") else cfg.n_steps
    steps = min(S, max(1, max(b, cfg.internal_batch_size) // b))
    if 3 * steps < S:
        return 3 * steps, steps * b
    return S, cfg.internal_batch_size


def greedy_pool_methods(batch_size: int):
    """Greedy's pool methods as it runs them, (IG, AtP, magnitude): its own ``pool_methods``, found
    through the registry (bench never imports the methods package)."""
    return type(method_instance("greedy", {})).pool_methods(batch_size)


def greedy_evaluations(pool: int, exact_below: int) -> int:
    """Circuits greedy's elimination evaluates from a pool of ``pool`` nodes: its own ``n_evaluations``."""
    return type(method_instance("greedy", {})).n_evaluations(pool, exact_below)


def greedy_eliminate_fn(sp, st: Settings, cfg, n: int):
    """Greedy's elimination forward: ``stacked_logit_diff`` of as many circuits as fill ``max_rows`` rows on
    its first ``n_prompts`` train prompts, without gradients; (the function, its rows per forward)."""
    import torch

    from bench.model.masked import stacked_logit_diff

    m = min(cfg.n_prompts, n)
    ctx = make_context(sp, st, m)
    b = min(m, max(1, cfg.max_rows))  # prompts per forward
    per = max(1, cfg.max_rows // b)  # circuits per forward
    circuit = {s: c.clone() for s, c in ctx.candidates.items()}

    def fn():
        with torch.no_grad():
            return stacked_logit_diff(sp, ctx.train, [circuit] * per, ctx.replacement, cfg.max_rows)

    return fn, per * b


def _ap_unit(sp, ctx, rows: int):
    """One forward + backward of ``rows`` prompts with a float mask at every site (a mask / AP step)."""
    import torch

    masks = {s: torch.ones(ctx.train.n_pos, sp.d_sae(s), device=sp.device, requires_grad=True) for s in ctx.sites}
    ld = ctx.masked_metric(masks, ctx.train.subset(list(range(rows))), 0)
    ld.sum().backward()


def _fwd_unit(sp, ctx, rows: int):
    import torch

    with torch.no_grad():
        sp.run(ctx.train.clean[:rows])


def _simulate_modes(sp, fn, mode: str, alt_mode: str | None, flops: bool):
    """``fn`` simulated with the logits in ``mode`` (FLOPs counted if ``flops``), and its peak in
    ``alt_mode`` (None: not asked for)."""
    def run(m, count):
        with logits_mode(sp, m):
            return simulate(sp, fn, flops=count)

    return run(mode, flops), (run(alt_mode, False).peak if alt_mode else None)


def plan_evaluator(sp, st: Settings, alt_mode: str | None) -> tuple[MethodPlan, float]:
    """The evaluator's stacked forward (``max_rows`` rows, bool masks per row); FLOPs per evaluated row."""
    from bench.eval.evaluate import Evaluator, SplitData

    ctx = make_context(sp, st, st.n_test)
    universe = {s: c.clone() for s, c in ctx.candidates.items()}
    per = max(1, st.max_rows // st.n_test)

    def fn():
        ev = Evaluator(sp, {"test": SplitData(ctx.train, ctx.replacement)}, universe, max_rows=st.max_rows)
        return ev.lds([universe] * per, "test")

    sim, alt = _simulate_modes(sp, fn, st.logits, alt_mode, flops=False)
    row = simulate(sp, lambda: _fwd_unit(sp, ctx, 1))
    return (MethodPlan("evaluator", min(st.max_rows, per * st.n_test), False, sim.peak, sim.breakdown, alt, 0.0, 0.0,
                       "every circuit's stacked forward (per method cell: sizes x (test + complement + train) + knockouts)"),
            row.flops)


def plan_edge_evaluator(sp, st: Settings, alt_mode: str | None) -> tuple[MethodPlan, float, int]:
    """The exact edge evaluator on the assumed edge universe (:func:`bench.plan.edges.edge_evaluator_fn`):
    its plan row, the FLOPs of one edge circuit on the test prompts, and the universe's candidate edges."""
    fn, rows, n_edges = edge_evaluator_fn(sp, st)
    sim, alt = _simulate_modes(sp, fn, st.logits, alt_mode, flops=True)
    return (MethodPlan("edge evaluator", rows, False, sim.peak, sim.breakdown, alt, 0.0, 0.0,
                       "every edge circuit exactly, one segment forward per distinct in-edge set (here: per downstream "
                       "node); per edge-method cell: sizes x (test + complement + train)", unit="edges"),
            sim.flops, n_edges)


def _edge_lambdas(st: Settings) -> int:
    """The edge mask's lambdas at the settings (its circuits set the sizes every edge method is cut at)."""
    cfg = method_instance("edge_mask", st.method_options.get("edge_mask", {})).config
    return len(cfg.lambdas) or cfg.n_lambdas


def plan_setup(sp, st: Settings) -> tuple[int, int]:
    """Task setup (latents of every train prompt for the candidates, the ablation's means): peak and resident."""
    holder = {}

    def fn():
        holder["ctx"] = make_context(sp, st, st.n_train)

    sim = simulate(sp, fn)
    ctx = holder["ctx"]
    resident = sum(v.numel() * v.element_size() for v in ctx.replacement.values.values())
    resident += 2 * sum(c.numel() * c.element_size() for c in ctx.candidates.values())  # train candidates + universe
    return sim.peak, resident


def eval_rows_per_cell(st: Settings, n_universe: int) -> int:
    """Rows the evaluator runs for one method cell: every size on test, complement and train, plus knockouts."""
    from bench.eval.sizes import size_grid

    try:
        n_sizes = len(size_grid(n_universe, st.grid_per_decade))
    except Exception:  # noqa: BLE001
        n_sizes = max(1, round(st.grid_per_decade * math.log10(max(10, n_universe))))
    return n_sizes * (2 * st.n_test + st.n_train) + (st.n_headline + 1) * 2 * st.n_knockout * st.n_test


def check_methods(names) -> None:
    """One line naming every method the plan does not model (before anything is built)."""
    unknown = [n for n in names if n not in MODELLED + EDGE_MODELLED]
    if unknown:
        raise UsageError(f"bench plan: no plan for method(s) {', '.join(unknown)} (planned: "
                         f"{', '.join(MODELLED + EDGE_MODELLED)})")
