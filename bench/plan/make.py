"""``make_plan``: the plan of every method a run would use, from the architecture alone (the model
and SAEs built on the meta device, each method simulated by :mod:`bench.plan.estimate`), and
:class:`Plan`, what it returns."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bench.plan.arch import ARCH_KEYS, Arch, build_meta, resolve_arch, static_bytes
from bench.plan.contexts import fresh_state
from bench.plan.edges import EDGE_MODELLED, edge_eval_units
from bench.plan.estimate import (
    GIB,
    GPU_FRAGMENTATION,
    GPU_RESERVE_GIB,
    MethodPlan,
    Settings,
    _edge_lambdas,
    _first_site_blocks,
    code_logits_mode,
    eval_rows_per_cell,
    plan_edge_evaluator,
    plan_evaluator,
    plan_method,
    plan_setup,
)


@dataclass
class Plan:
    preset: str
    arch: Arch
    settings: Settings
    code_logits: str
    static: dict[str, int]
    setup_peak: int
    resident: int
    methods: list[MethodPlan]
    per_block_token: float  # bytes kept per block per token by a gradient pass (attribution patching)

    @property
    def static_total(self) -> int:
        return sum(self.static.values())

    def fits(self, working: int) -> str:
        total = self.static_total + self.resident + working
        cap = self.settings.gpu_memory_gib * GIB
        if total * (1 + GPU_FRAGMENTATION) + GPU_RESERVE_GIB * GIB <= cap:
            return "yes"
        return "tight" if total <= cap else "no"

    def to_dict(self) -> dict:
        st = self.settings
        return {
            "preset": self.preset, "architecture_source": self.arch.source, "checks": self.arch.checks,
            "architecture": {k: self.arch.cfg.get(k) for k in (*ARCH_KEYS, "n_ctx", "original_architecture")},
            "saes": [{"hook": h, "d_sae": int(c["d_sae"]), "architecture": c.get("architecture")} for h, c in self.arch.saes],
            "settings": dataclasses.asdict(st),
            "logits_in_code": self.code_logits,
            "bytes": {"static": self.static, "resident": self.resident, "setup_peak_working": self.setup_peak},
            "per_block_per_token_bytes": self.per_block_token,
            "gpu_memory_gib": st.gpu_memory_gib, "tflops": st.throughput / 1e12,
            "methods": [{
                "method": m.method, "unit": m.unit, "rows": m.rows, "grad": m.grad, "working_bytes": m.working,
                "peak_bytes": m.total(self.static_total, self.resident), "breakdown_at_peak": m.breakdown,
                "peak_bytes_other_logits_mode": (None if m.working_alt is None
                                                 else m.working_alt + self.static_total + self.resident),
                "flops": m.flops, "eval_flops": m.eval_flops,
                "seconds": (m.flops + m.eval_flops) / st.throughput, "fits": self.fits(m.working), "notes": m.notes,
            } for m in self.methods],
        }


# Relative simulation times on Gemma-2-9B (measured at 2 cores), to start the longest first.
_SIM_WEIGHT = {"integrated_gradients": 4.4, "binary_mask": 2.4, "greedy": 2.1, "edge_mask": 2.0,
               "activation_patching": 1.2, "evaluator": 0.8, "attribution_patching": 0.8}


def _preload(names) -> None:
    """Import each method's module (IG's and greedy's import captum, half a second each) in this
    process, so forked workers inherit it; a method that fails to load fails in its simulation."""
    from bench.registry import load

    for n in names:
        try:
            load("method", n)
        except Exception:  # noqa: BLE001 - reported where it is simulated, with the method's name
            pass


def make_plan(preset, settings: Settings | None = None, world_dir=None, progress: bool = False,
              jobs: int = 1) -> Plan:
    """The plan of every modelled method and the evaluator (``progress``: a bar over them, where a
    person can see it; ``jobs``: simulations in that many forked processes, :mod:`bench.plan.parallel`,
    the same plan either way)."""

    from bench.model.presets import get_preset
    from bench.plan.parallel import forked_map
    from bench.progress import progress_bar

    p = get_preset(preset) if isinstance(preset, str) else preset
    st = settings or Settings.defaults(dtype=p.dtype)
    arch = resolve_arch(p, world_dir)
    sp = build_meta(arch, st.dtype, st.error_policy)
    code = code_logits_mode()
    alt = ("all" if code == "last" else "last") if st.logits == "code" and st.compare_logits else None
    static = static_bytes(sp)
    setup_peak, resident = plan_setup(sp, st)
    names = list(st.methods)
    edge_names = [n for n in names if n in EDGE_MODELLED]
    items = [*names, "evaluator", *(["edge evaluator"] if edge_names else [])]
    # the longest simulations first, so the workers finish together (seconds on Gemma-2-9B, 2 cores)
    items.sort(key=lambda x: -_SIM_WEIGHT.get(x, 1.0))

    def simulate_item(item: str):
        fresh_state(sp)
        if item == "evaluator":
            return plan_evaluator(sp, st, alt)
        if item == "edge evaluator":
            return plan_edge_evaluator(sp, st, alt)
        return plan_method(sp, st, item, alt)

    bar = progress_bar(total=len(items), desc=f"plan {p.name}", enabled=progress)

    def finished(i: int) -> None:
        bar.set_postfix_str(items[i])
        bar.update(1)

    if jobs > 1:  # import the methods' modules once, before the fork, not once in every worker
        _preload(names)
    out = dict(zip(items, forked_map(simulate_item, items, jobs, finished)))
    bar.close()
    methods = [out[n] for n in names]
    ev, row_flops = out["evaluator"]
    n_universe = sum(min(st.candidates_per_pos, sp.d_sae(s)) * (st.seq_len - 1) for s in sp.sites)
    per_cell = eval_rows_per_cell(st, n_universe) * row_flops
    for m in methods:
        m.eval_flops = per_cell if m.unit == "nodes" else 0.0
    ev.flops = 0.0
    methods.append(ev)
    if edge_names:
        edge_ev, per_circuit, n_edges = out["edge evaluator"]
        for m in methods:
            if m.unit == "edges":
                m.eval_flops = sum(edge_eval_units(st, n_edges, m.method, _edge_lambdas(st))) * per_circuit
        methods.append(edge_ev)
    ap = next((m for m in methods if m.method == "attribution_patching"), None)
    per_block = 0.0
    if ap is not None:
        tokens = ap.rows * st.seq_len
        per_block = ap.breakdown.get("activations", 0) / max(1, tokens * _first_site_blocks(sp))
    return Plan(p.name, arch, st, code, static, setup_peak, resident, methods, per_block)
