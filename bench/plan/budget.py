"""Memory by plan: every method's batch-like options and the evaluator's ``max_rows``, fitted to a budget.

A run with a memory budget (``--max-memory GIB``, or the device's total memory when ``--device`` is
CUDA) never takes a batch size on luck. For each method this module walks a *ladder* of option
values ordered by rows per forward (the pass that holds the peak), from the method's configured
value down to one row, and picks the largest rung whose predicted peak fits:

    (static + resident + working(rung)) x (1 + 5%) + 1 GiB <= budget

which is ``bench plan``'s "fits" rule (``Plan.fits``: allocator slack and the CUDA context).
*static* is the model's and every SAE's parameters and buffers; *resident* is what each cached task
setup keeps on the device (replacement latents of both splits, candidates), times the setups the
runner keeps at once; *working* is the tracked peak of the method's own code on PyTorch's meta
device (:mod:`bench.plan.simulate`'s tracker), at that rung.

Search: the configured rung first (if it fits, nothing changes); else the one-row rung (if even
that does not fit: a one-line :class:`~bench.errors.UsageError` naming the method and the memory it
needs there); else working memory is close to linear in rows, so the rung is read off the line
through those two points and checked by one more simulation (a secant step, repeated at most a few
times when the check disagrees). A simulation runs one chunk of the method's work at the rung's
rows (chunks are identical and sequential, so one chunk holds the peak; ``tests/test_budget.py``
checks it equals bench.plan.estimate's whole-run simulation): one batch for attribution patching and
activation magnitude; one batch of integrated gradients with all its per-SAE paths and its step
ladder's largest count (``max_steps`` when ``n_steps=0`` chooses the count) cut to three internal
batches (from the third on, each also holds captum's running sum and the previous batch's result);
one group of lambdas for the mask (2 steps, trace forwards included); one candidate chunk per site
for exact patching; one stacked forward for the evaluator; for greedy, the largest of its pool's
integrated-gradients and attribution-patching runs (at greedy's settings of them, simulated as above)
and one stacked no-grad forward of its elimination.

The ladders (rows per forward; what changes):

* binary_mask: ``max_rows`` in multiples of ``batch_size`` (fewer lambdas per forward: the same
  circuits), then, below one lambda's batch, ``batch_size`` itself (this changes the training and
  is logged as such; pin ``--option binary_mask.batch_size=16`` to refuse it);
* integrated_gradients: ``internal_batch_size`` in multiples of ``batch_size`` (steps per forward),
  then ``batch_size`` = ``internal_batch_size`` below it (same scores up to float summation);
* attribution_patching, activation_magnitude: ``batch_size``; activation_patching: ``forward_batch``
  in multiples of its prompts; the evaluator: ``max_rows`` (all of these leave results unchanged);
* greedy: ``batch_size`` (its pool's batches: IG at ``min(batch_size, 16)`` prompts x 10 steps,
  AtP and magnitude at ``batch_size``; same pool up to float summation) with ``max_rows`` (its
  elimination's rows per forward; the same circuits) in proportion, then ``max_rows`` alone; a
  rung's rows are the largest of its passes'. With one of them pinned, the other alone
  (``max_rows`` in multiples of ``n_prompts``, then below them).

Options the user set (``--option METHOD.KEY=...``, ``--max-rows``) are pinned: never changed, and a
budget they cannot meet is an error. The chosen options become method options (so they are in
every cell's params and key, and in run.json) and are logged one line per method. Simulations are
cached per (preset, settings) in the process; with no budget nothing is simulated at all.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

from bench.errors import UsageError
from bench.plan.contexts import fresh_state
from bench.plan.estimate import (
    DEFAULT_SEQ_LEN,
    GIB,
    GPU_FRAGMENTATION,
    GPU_RESERVE_GIB,
    MODELLED,
    Settings,
    greedy_eliminate_fn,
    greedy_pool_methods,
    ig_peak_steps,
    make_context,
    plan_setup,
)

log = logging.getLogger("bench")

EVALUATOR = "evaluator"
# The batch-like options of each modelled method (the keys a fit may set).
BATCH_KEYS: dict[str, tuple[str, ...]] = {
    "binary_mask": ("max_rows", "batch_size"),
    "integrated_gradients": ("internal_batch_size", "batch_size"),
    "attribution_patching": ("batch_size",),
    "activation_patching": ("forward_batch",),
    "activation_magnitude": ("batch_size",),
    "random": (),
    "greedy": ("max_rows", "batch_size"),
}
MAX_SECANT_STEPS = 4


def usable_bytes(budget_gib: float) -> float:
    """Bytes of tensors a budget allows under ``bench plan``'s fits rule (5% slack + 1 GiB reserve)."""

    return (budget_gib - GPU_RESERVE_GIB) * GIB / (1 + GPU_FRAGMENTATION)


def _gib(b: float) -> str:
    return f"{b / 2**30:.1f}" if abs(b) >= 0.095 * 2**30 else f"{b / 2**30:.3f}"


# ----- ladders ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rung:
    rows: int
    options: tuple[tuple[str, object], ...]  # the batch-like options only, sorted

    @property
    def opts(self) -> dict:
        return dict(self.options)


def _rung(rows: int, **opts) -> Rung:
    return Rung(int(rows), tuple(sorted(opts.items())))


def _binary_mask_groups(cfg) -> int:
    """Lambdas a sweep may train together: the grid, or the adaptive probe's ladder if that is longer."""
    g = len(cfg.grid())
    if getattr(cfg, "uses_probe", False):
        g = max(g, len(cfg.probe_ladder()))
    return g


def ladder(name: str, cfg, pinned: set[str], n_train: int, n_test: int, max_rows: int) -> list[Rung]:
    """Rungs from the configured options (first) down to the fewest rows, largest rows first."""
    n = n_train
    out: list[Rung] = []
    if name == EVALUATOR:
        def rows(R):  # the evaluator stacks whole circuits: (R // prompts) circuits of min(R, split) prompts
            return max((R // min(R, k)) * min(R, k) for k in (n_test, n_train))

        out = [_rung(rows(R), max_rows=R) for R in ([max_rows] if "max_rows" in pinned else range(max_rows, 0, -1))]
    elif name == "binary_mask":
        G = _binary_mask_groups(cfg)

        def rows(B, M):
            b = min(B, n)
            if cfg.sweep == "sequential":
                return b
            return b * (G if M == 0 else min(G, max(1, M // b)))

        B0, M0 = cfg.batch_size, cfg.max_rows
        out.append(_rung(rows(B0, M0), max_rows=M0, batch_size=B0))
        if "max_rows" not in pinned and cfg.sweep != "sequential":
            b = min(B0, n)
            out += [_rung(rows(B0, k * b), max_rows=k * b, batch_size=B0) for k in range(rows(B0, M0) // b, 0, -1)]
        if "batch_size" not in pinned:
            for B in range(min(B0, n) - 1, 0, -1):
                M = M0 if "max_rows" in pinned else B
                out.append(_rung(rows(B, M), max_rows=M, batch_size=B))
    elif name == "integrated_gradients":
        S = cfg.step_ladder()[-1] if hasattr(cfg, "step_ladder") else cfg.n_steps  # the ladder's largest count

        def rows(b, i):
            b = min(b, n)
            return min(S, max(1, max(b, i) // b)) * b

        b0, i0 = cfg.batch_size, cfg.internal_batch_size
        out.append(_rung(rows(b0, i0), internal_batch_size=i0, batch_size=b0))
        eb = min(b0, n)
        if "internal_batch_size" not in pinned:
            out += [_rung(rows(b0, k * eb), internal_batch_size=k * eb, batch_size=b0)
                    for k in range(rows(b0, i0) // eb, 0, -1)]
        if "batch_size" not in pinned:
            for b in range(eb - 1, 0, -1):
                i = i0 if "internal_batch_size" in pinned else b
                out.append(_rung(rows(b, i), internal_batch_size=i, batch_size=b))
    elif name in ("attribution_patching", "activation_magnitude"):
        b0 = cfg.batch_size
        out.append(_rung(min(b0, n), batch_size=b0))
        if "batch_size" not in pinned:
            out += [_rung(b, batch_size=b) for b in range(min(b0, n) - 1, 0, -1)]
    elif name == "greedy":
        m = min(cfg.n_prompts, n)

        def pool_rows(B):  # the pool's gradient passes: IG's (steps x prompts) and AtP's (prompts)
            ig = greedy_pool_methods(B)[0].config
            b = min(ig.batch_size, n)
            return max(min(ig.n_steps, max(1, max(b, ig.internal_batch_size) // b)) * b, min(B, n))

        def rows(B, M):  # and the elimination's stacked forward: (M // prompts) circuits of min(M, n_prompts) prompts
            k = min(M, m)
            return max(pool_rows(B), (M // k) * k)

        B0, M0 = cfg.batch_size, cfg.max_rows
        out.append(_rung(rows(B0, M0), max_rows=M0, batch_size=B0))
        free = {"max_rows", "batch_size"} - set(pinned)
        if free == {"max_rows"}:  # fewer circuits per forward (the same circuits), then fewer prompts
            Ms = [k * m for k in range(M0 // m, 0, -1)] + list(range(min(M0, m) - 1, 0, -1))
            out += [_rung(rows(B0, M), max_rows=M, batch_size=B0) for M in Ms]
        elif free == {"batch_size"}:  # the elimination's forward is fixed: the pool's passes are what shrinks
            out += [_rung(pool_rows(B), max_rows=M0, batch_size=B) for B in range(min(B0, n) - 1, 0, -1)]
        elif free:
            # Both at once, max_rows in proportion to the pool's rows: shrinking the (no-grad) elimination alone
            # would leave the pool's gradient passes, usually the peak, unchanged along a stretch of rungs,
            # a plateau that stalls the secant search. Below one prompt of the pool, max_rows alone.
            P0 = pool_rows(B0)
            for B in range(min(B0, n) - 1, 0, -1):
                M = max(1, M0 * pool_rows(B) // P0)
                out.append(_rung(rows(B, M), max_rows=M, batch_size=B))
            out += [_rung(rows(1, M), max_rows=M, batch_size=1) for M in range(max(1, M0 * pool_rows(1) // P0) - 1, 0, -1)]
    elif name == "activation_patching":
        m = min(cfg.max_prompts, n)
        f0 = cfg.forward_batch
        out.append(_rung(max(1, f0 // m) * m, forward_batch=f0))
        if "forward_batch" not in pinned:
            out += [_rung(k * m, forward_batch=k * m) for k in range(max(1, f0 // m), 0, -1)]
    else:
        raise KeyError(name)
    # Largest rows first; the configured rung wins ties (so a fitting default changes nothing).
    seen, uniq = set(), []
    for r in sorted(out, key=lambda r: -r.rows):
        if r.rows not in seen:
            seen.add(r.rows)
            uniq.append(r)
    first = out[0]
    return [first] + [r for r in uniq if r.rows < first.rows]


# ----- the simulated model, per (preset, settings) ------------------------------------------------

@dataclass
class Fitter:
    """The meta-device spliced model of one (preset, settings) and a cache of its simulations."""

    preset: object
    settings: object  # bench.plan.estimate.Settings
    quick: bool
    sites: tuple[str, ...]
    world_dir: str | None = None
    sims: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from bench.plan.arch import build_meta, resolve_arch, static_bytes

        st = self.settings
        arch = resolve_arch(self.preset, self.world_dir)
        sp = build_meta(arch, st.dtype, st.error_policy)
        self.static = static_bytes(sp)  # every SAE of the preset is loaded, whatever --sites splices
        if self.sites and set(self.sites) <= set(sp.sites):
            sp = sp.with_sites(self.sites)
        self.sp, self.arch = sp, arch
        self.setup_peak, _ = plan_setup(sp, st)

        ctx = make_context(sp, st, st.n_train)
        repl = sum(v.numel() * v.element_size() for v in ctx.replacement.values.values())
        test_repl = repl * st.n_test / st.n_train if ctx.replacement.per_prompt else repl
        cands = sum(c.numel() * c.element_size() for c in ctx.candidates.values())
        # One task setup on the device: train and test replacements, the train candidates.
        self.resident_per_setup = int(repl + test_repl + cands)

    @property
    def static_total(self) -> int:
        return sum(self.static.values())

    def method(self, name: str, options: dict):
        from bench.run.config import RunConfig
        from bench.run.setup import build_method

        return build_method(name, RunConfig(quick=self.quick, method_options={name: dict(options)} if options else {}))

    def working(self, name: str, options: dict) -> int:
        """Tracked peak (bytes above static and resident) of one chunk of ``name`` at ``options``."""
        key = (name, tuple(sorted((k, repr(v)) for k, v in options.items())))
        if key not in self.sims:
            self.sims[key] = self._simulate(name, options)
        return self.sims[key]

    def _simulate(self, name: str, options: dict) -> int:
        import torch

        from bench.plan.simulate import simulate

        sp, st = self.sp, self.settings
        n = st.n_train
        fresh_state(sp)  # seed 0, no train prefix an earlier candidate cached
        if name == EVALUATOR:
            from bench.eval.evaluate import Evaluator, SplitData

            R = int(options["max_rows"])
            k = max((min(R, m) for m in (st.n_test, st.n_train)), key=lambda m: (R // m) * m)  # the larger forward
            ctx = make_context(sp, st, k)
            universe = {s: c.clone() for s, c in ctx.candidates.items()}

            def fn():
                ev = Evaluator(sp, {"test": SplitData(ctx.train, ctx.replacement)}, universe, max_rows=R)
                return ev.lds([universe] * max(1, R // k), "test")

            return simulate(sp, fn, flops=False).peak
        method = self.method(name, options)
        cfg = method.config
        if name in ("attribution_patching", "activation_magnitude", "random"):
            ctx = make_context(sp, st, min(getattr(cfg, "batch_size", 2), n))
            return simulate(sp, lambda: method.discover(ctx), flops=False).peak
        if name == "integrated_gradients":
            b = min(cfg.batch_size, n)
            # three internal batches of the same rows, or the ladder's top count pinned (its
            # completeness check needs real numbers): the peak of the whole run (ig_peak_steps)
            steps, ibs = ig_peak_steps(cfg, b)
            method = self.method(name, {**options, "n_steps": steps, "internal_batch_size": ibs})
            ctx = make_context(sp, st, b)
            return simulate(sp, lambda: method.discover(ctx), flops=False).peak
        if name == "binary_mask":
            b = min(cfg.batch_size, n)
            G = _binary_mask_groups(cfg)
            L = 1 if cfg.sweep == "sequential" else (G if cfg.max_rows == 0 else min(G, max(1, cfg.max_rows // b)))
            lambdas = [10.0 ** (-3 + 3 * j / max(1, L - 1)) for j in range(L)]  # one group, as the sweep trains it
            ctx = make_context(sp, st, n)
            ld_ref = torch.zeros(n, device=sp.device)
            return simulate(sp, lambda: method.sweep(ctx, lambdas, ld_ref, steps=2), flops=False).peak
        if name == "activation_patching":
            m = min(cfg.max_prompts, n)
            ctx = make_context(sp, st, m)
            return simulate(sp, lambda: method.discover(ctx), nonzero_rows=max(1, cfg.forward_batch // m), flops=False).peak
        if name == "greedy":
            # The largest of its pool's IG and AtP runs (each simulated as above, at greedy's settings of them,
            # every option explicit so no quick override applies) and one stacked forward of its elimination.
            ig, atp, _ = greedy_pool_methods(cfg.batch_size)
            fn, _ = greedy_eliminate_fn(sp, st, cfg, n)
            return max(self.working(ig.name, ig.config.to_dict()), self.working(atp.name, atp.config.to_dict()),
                       simulate(sp, fn, flops=False).peak)
        raise KeyError(name)


_FITTERS: dict = {}


def fitter(preset, cfg, dtype: str | None = None, seq_len: int | None = None) -> Fitter:
    """The cached :class:`Fitter` of the run's preset and settings (built once per process)."""
    from bench.model.presets import get_preset

    p = get_preset(preset) if isinstance(preset, str) else preset
    # The largest train split of the run's tasks (a task may ask for more than n_train, e.g. IOI).
    n_train = max([cfg.n_train, *(cfg.train_size(t) for t in cfg.tasks)])
    st = Settings.defaults(n_train=n_train, n_test=cfg.n_test, seq_len=seq_len or DEFAULT_SEQ_LEN,
                           dtype=dtype or p.dtype, error_policy=cfg.error_policy, ablation=cfg.ablation)
    key = (p, cfg.world_dir, tuple(cfg.sites), cfg.quick, st.n_train, st.n_test, st.seq_len, st.dtype,
           st.error_policy, st.ablation)
    if key not in _FITTERS:
        _FITTERS[key] = Fitter(p, st, cfg.quick, tuple(cfg.sites), cfg.world_dir)
    return _FITTERS[key]


# ----- the fit ------------------------------------------------------------------------------------

@dataclass
class MethodFit:
    method: str
    options: dict  # the batch-like options chosen (for the evaluator: max_rows)
    rows: int
    peak: int  # predicted bytes: static + resident + working
    default_rows: int
    default_peak: int
    pinned: tuple[str, ...] = ()
    note: str = ""

    @property
    def changed(self) -> bool:
        return self.rows != self.default_rows


@dataclass
class BudgetFit:
    budget_gib: float
    usable: float
    static: int
    resident: int
    setup_peak: int
    methods: dict[str, MethodFit]
    skipped: dict[str, str] = field(default_factory=dict)  # method -> why it was not fitted

    @property
    def options(self) -> dict[str, dict]:
        return {name: dict(f.options) for name, f in self.methods.items()}

    def lines(self) -> list[str]:
        head = (f"memory budget {self.budget_gib:g} GiB: {_gib(self.usable)} GiB for tensors after 5% + 1 GiB; "
                f"static {_gib(self.static)} GiB (model + SAEs), resident {_gib(self.resident)} GiB (task setups)")
        out = [head]
        for name, f in self.methods.items():
            if not f.options:
                out.append(f"budget: {name} (no batch-like options), predicted peak {_gib(f.peak)} GiB")
                continue
            opts = " ".join(f"{k}={v}" for k, v in sorted(f.options.items()))
            was = "" if not f.changed else f" (was {f.default_rows} rows: {_gib(f.default_peak)} GiB)"
            out.append(f"budget: {name} {opts} -> {f.rows} rows/forward, predicted peak {_gib(f.peak)} GiB{was}"
                       + (f"; {f.note}" if f.note else ""))
        out += [f"budget: {name} not fitted ({why})" for name, why in self.skipped.items()]
        return out


def _search(fit: Fitter, name: str, rungs: list[Rung], base: dict, avail: float) -> tuple[Rung, int, int]:
    """The largest rung whose working memory is <= ``avail``: (rung, its working, the first rung's working)."""

    def W(i: int) -> int:
        return fit.working(name, {**base, **rungs[i].opts})

    w0 = W(0)
    if w0 <= avail:
        return rungs[0], w0, w0
    lo = len(rungs) - 1
    w_lo = W(lo)
    if w_lo > avail:
        raise _Infeasible(rungs[lo], w_lo, w0)
    hi, w_hi = 0, w0
    for _ in range(MAX_SECANT_STEPS):
        if lo - hi <= 1:
            break
        slope = (w_hi - w_lo) / max(1, rungs[hi].rows - rungs[lo].rows)
        r_star = rungs[lo].rows + (avail - w_lo) / slope if slope > 0 else rungs[hi].rows - 1
        cand = next((i for i in range(hi + 1, lo) if rungs[i].rows <= r_star), lo)
        if cand == lo:
            break
        w = W(cand)
        if w <= avail:
            lo, w_lo = cand, w
        else:
            hi, w_hi = cand, w
    return rungs[lo], w_lo, w0


class _Infeasible(Exception):
    def __init__(self, rung: Rung, working: int, default_working: int):
        super().__init__()
        self.rung, self.working, self.default_working = rung, working, default_working


def fit(preset, cfg, budget_gib: float, *, setups: int = 1, dtype: str | None = None, seq_len: int | None = None,
        pinned: dict[str, set[str]] | None = None, max_rows_pinned: bool = False) -> BudgetFit:
    """Fit every method of ``cfg`` (a :class:`bench.run.config.RunConfig`) and the evaluator to ``budget_gib``.

    ``pinned``: per method, the option keys the user set (default: every key of ``cfg.method_options``);
    ``max_rows_pinned``: the user gave ``--max-rows``. ``setups``: task setups the runner keeps on the
    device at once. Raises :class:`UsageError` (one line) when a method cannot fit even at its fewest rows.
    """
    from bench.run.setup import build_method

    f = fitter(cfg.preset if preset is None else preset, cfg, dtype=dtype, seq_len=seq_len)
    st = f.settings
    if pinned is None:
        pinned = {m: set(o) for m, o in cfg.method_options.items()}
    usable = usable_bytes(budget_gib)
    resident = f.resident_per_setup * max(1, setups)
    avail = usable - f.static_total - resident

    def need(w: float) -> str:  # the predicted peak, and the smallest budget it fits (the same rule)
        total = f.static_total + resident + w
        least = total * (1 + GPU_FRAGMENTATION) / GIB + GPU_RESERVE_GIB
        return f"{_gib(total)} GiB (a budget of {least:.{1 if least >= 10 else 3}f} GiB or more)"

    where = (f"{st.dtype}, {len(f.sp.sites)} SAE(s), {st.n_train} train / {st.n_test} test prompts of {st.seq_len} tokens")
    hint = "use a bfloat16 preset (dtype = \"bfloat16\" in a preset TOML), fewer SAEs (--sites) or a larger --max-memory"
    if f.setup_peak > avail:
        raise UsageError(f"memory budget {budget_gib:g} GiB: the task setup alone needs {need(f.setup_peak)} "
                         f"({where}); {hint}")
    out = BudgetFit(budget_gib, usable, f.static_total, resident, f.setup_peak, {})
    names = [*cfg.methods, EVALUATOR]
    for spec in names:
        if spec == EVALUATOR:
            name, base, user, mcfg = EVALUATOR, {}, {"max_rows"} if max_rows_pinned else set(), None
        else:
            try:
                method = build_method(spec, cfg)
            except Exception as exc:  # noqa: BLE001 - the runner reports a method that cannot load
                out.skipped[spec] = f"cannot build: {exc}"
                continue
            name, mcfg = method.name, method.config
            if name not in BATCH_KEYS or spec != name:
                out.skipped[spec] = "not modelled by bench plan: options unchanged"
                continue
            user = set(pinned.get(spec, ())) | set(pinned.get(name, ()))
            base = dict(cfg.method_options.get(spec, {}))
        if name != EVALUATOR and not BATCH_KEYS[name]:
            w = f.working(name, base)
            if w > avail:
                raise UsageError(f"memory budget {budget_gib:g} GiB: {name} needs {need(w)} ({where}); {hint}")
            out.methods[name] = MethodFit(name, {}, 0, int(f.static_total + resident + w), 0,
                                          int(f.static_total + resident + w))
            continue
        rungs = ladder(name, mcfg, user, st.n_train, st.n_test, cfg.max_rows)
        try:
            rung, w, w0 = _search(f, name, rungs, base, avail)
        except _Infeasible as bad:
            opts = " ".join(f"{k}={v}" for k, v in bad.rung.options)
            pins = f"; pinned by you: {', '.join(sorted(user))}" if user else ""
            raise UsageError(
                f"memory budget {budget_gib:g} GiB: {name} needs {need(bad.working)} even at {bad.rung.rows} row(s) "
                f"per forward ({opts}{pins}; {where}); {hint}") from None
        note = ""
        if name == "binary_mask" and rung.opts.get("batch_size") != mcfg.batch_size:
            note = (f"batch_size {mcfg.batch_size} -> {rung.opts['batch_size']} changes the training "
                    f"(pin binary_mask.batch_size to refuse)")
        fixed = tuple(sorted(k for k in user if k in rung.opts))
        out.methods[name] = MethodFit(name, rung.opts, rung.rows, int(f.static_total + resident + w), rungs[0].rows,
                                      int(f.static_total + resident + w0), fixed, note)
    return out


def fit_options(preset, cfg, budget_gib: float, **kw) -> dict[str, dict]:
    """``{method: {option: value}}`` fitted to ``budget_gib``, plus ``{"evaluator": {"max_rows": R}}``."""
    return fit(preset, cfg, budget_gib, **kw).options


# ----- the run's budget ---------------------------------------------------------------------------

def device_budget_gib(device: str) -> float | None:
    """Total memory of a CUDA ``device`` in GiB, if CUDA is available here; else None."""
    if not str(device).startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    dev = torch.device(device)
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    return torch.cuda.get_device_properties(index).total_memory / 2**30


def run_budget(args) -> tuple[float | None, str]:
    """The budget of a run in GiB (``--max-memory``, else the CUDA device's memory) and where it came from."""
    explicit = getattr(args, "max_memory", None)
    if explicit is not None:
        if explicit <= 0:
            raise UsageError(f"--max-memory {explicit:g}: expected a positive number of GiB")
        budget, source = float(explicit), "--max-memory"
    else:
        budget = device_budget_gib(getattr(args, "device", "cpu"))
        if budget is None:
            return None, ""
        source = f"{args.device} total memory"
    executor, jobs = getattr(args, "executor", "inline"), getattr(args, "jobs", 1)
    if executor == "process" and jobs != 1:  # local workers share the device, each with its own model
        import os

        workers = jobs if jobs and jobs > 0 else (os.cpu_count() or 1)
        budget, source = budget / workers, f"{source} / {workers} workers"
    return budget, source


def apply_budget(cfg, args):
    """``cfg`` with batch-like options fitted to the run's budget; ``cfg`` itself when no budget applies."""
    budget, source = run_budget(args)
    if budget is None:
        return cfg
    setups = 1
    if getattr(args, "executor", "inline") == "inline":
        from bench.run.config import MAX_SETUPS

        setups = min(MAX_SETUPS, len(cfg.tasks) * len(cfg.seeds))
    from bench.model.presets import get_preset

    dtype = cfg.dtype or get_preset(cfg.preset).dtype_on(cfg.device)
    result = fit(cfg.preset, cfg, budget, setups=setups, dtype=dtype,
                 max_rows_pinned=getattr(args, "max_rows", None) is not None)
    lines = result.lines()
    log.info("%s (%s)", lines[0], source)
    for line in lines[1:]:
        log.info("%s", line)
    options = {m: dict(o) for m, o in cfg.method_options.items()}
    for name, mf in result.methods.items():
        if name != EVALUATOR and mf.options:
            options[name] = {**mf.options, **options.get(name, {})}  # the user's own keys win (they are pinned)
    max_rows = result.methods[EVALUATOR].options.get("max_rows", cfg.max_rows)
    return dataclasses.replace(cfg, method_options=options, max_rows=max_rows)


def fit_settings(preset, st: Settings, world_dir=None, max_rows_pinned: bool = False):
    """``st`` with the batch-like options :mod:`bench.plan.budget` fits to ``st.gpu_memory_gib``; and the fit."""
    from bench.run.config import RunConfig

    rc = RunConfig(preset=preset.name, methods=tuple(m for m in st.methods if m in MODELLED) or ("random",),
                   n_train=st.n_train, n_test=st.n_test, error_policy=st.error_policy, ablation=st.ablation,
                   max_rows=st.max_rows, method_options=st.method_options, world_dir=world_dir)
    fitted = fit(preset, rc, st.gpu_memory_gib, dtype=st.dtype, seq_len=st.seq_len, max_rows_pinned=max_rows_pinned)
    # the fitted methods' options (the user's own keys win), and every other method's options as given
    opts = {**st.method_options, **{m: {**o, **st.method_options.get(m, {})} for m, o in fitted.options.items()
                                    if m != EVALUATOR}}
    return dataclasses.replace(st, method_options=opts, max_rows=fitted.options[EVALUATOR]["max_rows"]), fitted
