"""``bench plan``'s text: the table of a :class:`~bench.plan.make.Plan` and its notes."""

from __future__ import annotations

from bench.plan.estimate import GIB, GPU_FRAGMENTATION, GPU_RESERVE_GIB
from bench.plan.make import Plan


def _gib(b: float) -> str:
    return f"{b / GIB:.1f}" if b >= 0.095 * GIB else f"{b / GIB:.2f}"


def _flops(f: float) -> str:
    return f"{f:.2e}"


def _secs(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def format_plan(plan: Plan) -> str:
    st, a = plan.settings, plan.arch
    c = a.cfg
    other = "all positions" if plan.code_logits == "last" else "last position"
    compared = any(m.working_alt is not None for m in plan.methods)
    lines = [
        f"# bench plan: {plan.preset} ({st.dtype})",
        "",
        f"Architecture ({a.source}): {c.get('n_layers')} layers, d_model {c.get('d_model')}, d_mlp {c.get('d_mlp')}, "
        f"{c.get('n_heads')} heads x d_head {c.get('d_head')}"
        + (f", {c.get('n_key_value_heads')} KV heads" if c.get("n_key_value_heads") else "")
        + f", vocab {c.get('d_vocab')}; SAEs: " + ", ".join(f"{h} (d_sae {int(sc['d_sae'])}, {sc.get('architecture')})" for h, sc in a.saes),
    ]
    bad = [x for x in a.checks if x.startswith("MISMATCH")]
    if a.checks:
        lines.append(f"Cross-checks: {len(a.checks) - len(bad)} ok" + (f"; {'; '.join(bad)}" if bad else ""))
    lines += [
        f"Settings: {st.n_train} train / {st.n_test} test prompts of {st.seq_len} tokens, ablation {st.ablation}, "
        f"error {st.error_policy}, evaluator max_rows {st.max_rows}; logits: the code computes the "
        f"{'last position only' if plan.code_logits == 'last' else 'all positions'}.",
        f"Static: model {_gib(plan.static['model'])} GiB (parameters + buffers, TL layout) + SAEs {_gib(plan.static['saes'])} GiB; "
        f"resident per task {_gib(plan.resident)} GiB; task setup peaks at {_gib(plan.setup_peak)} GiB above static. "
        f"A gradient pass keeps {plan.per_block_token / 1024:.0f} KiB per block per token of activations "
        "(plus the weight copies).",
        "",
        "| method | rows/pass | grad | peak GiB | weight copies | activations | SAE lat./masks | logits | "
        + (f"peak if logits at {other} | " if compared else "")
        + f"FLOPs (discover) | time @ {st.throughput / 1e12:.0f} TFLOP/s | fits {st.gpu_memory_gib:g} GiB |",
        "|---|---:|:-:|---:|---:|---:|---:|---:|" + ("---:|" if compared else "") + "---:|---:|:-:|",
    ]
    for m in plan.methods:
        b = m.breakdown
        alt = "" if m.working_alt is None else _gib(m.working_alt + plan.static_total + plan.resident)
        t = _secs((m.flops + m.eval_flops) / st.throughput) if not m.method.endswith("evaluator") else ""
        lines.append(
            f"| {m.method} | {m.rows} | {'yes' if m.grad else 'no'} | {_gib(m.total(plan.static_total, plan.resident))} | "
            f"{_gib(b.get('weight copies', 0))} | {_gib(b.get('activations', 0))} | {_gib(b.get('SAE latents/masks', 0))} | "
            f"{_gib(b.get('logits', 0))} | " + (f"{alt} | " if compared else "")
            + f"{_flops(m.flops) if not m.method.endswith('evaluator') else ''} | {t} | "
            f"{plan.fits(m.working)} |")
    lines += ["", "Time includes the evaluator's work for the method's cell. Notes:"]
    lines += [f"- {m.method}: {m.notes}" for m in plan.methods if m.notes]
    lines += [
        f"- 'fits': peak x {1 + GPU_FRAGMENTATION:.2f} + {GPU_RESERVE_GIB:g} GiB (CUDA context, allocator) within "
        f"--gpu-memory; 'tight': only the bare peak fits.",
        "- Peaks come from running the code on the meta device (no weights); FLOPs count matmuls only.",
        f"- Not simulated: loading. from_pretrained holds the HF checkpoint and the TL copy in host RAM at once "
        f"(about {_gib(2 * plan.static['model'])} GiB for a hub preset).",
    ]
    return "\n".join(lines)
