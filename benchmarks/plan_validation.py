"""Check ``bench plan``'s memory predictions against measured peaks of the real methods (CPU).

For each model size (random weights, TransformerLens + SAELens, built by ``bench.plan.estimate.build_meta``
with ``device="cpu"``) and each method, a FRESH Python process builds the model, the SAEs and a task
context (``bench.plan.estimate.make_context``: replacement means and candidates, as the harness makes them),
runs the method once at tiny size to warm lazy initialisation up (thread pools, oneDNN kernels,
captum's import), then measures one real run of the method (its own ``discover``, or the evaluator's
stacked forward) and reports the peak resident memory *above* the level just before that run:

* the kernel's peak-RSS counter ``VmHWM`` (``/proc/self/status``) is reset to the current RSS by
  writing ``5`` to ``/proc/self/clear_refs`` right before the run, and read right after it, so the
  peak is exact (no sampling thread can miss a short spike) and excludes the model build;
* the child runs with ``MALLOC_MMAP_THRESHOLD_=65536``: every tensor larger than 64 KiB is its own
  ``mmap`` and goes back to the OS when freed, so RSS follows live tensor bytes instead of glibc's
  heap high-water mark (without it, freed activations stay resident and later peaks read high);
* one intra-op thread (``OMP_NUM_THREADS=1``): the machine's cores are shared, and per-thread
  scratch buffers would otherwise vary with the thread count.

The prediction is ``bench.plan.estimate``'s working memory for the same architecture and settings (the plan
runs the same code on the meta device). ``ratio = predicted / measured``; the acceptance is every
ratio within 25 % (0.75..1.25). Run: ``python benchmarks/plan_validation.py`` (about 10 minutes on
two shared cores); it rewrites ``benchmarks/plan_validation.json``, which ``tests/test_plan.py`` reads.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).with_suffix(".json")

# Random-weight models of increasing size: three Gemma-2-style (the paper's architecture: RMS pre/post
# norms, GQA, soft-caps, gated MLP, JumpReLU SAEs at resid_post) and one GPT-2-style with GPT-2's
# 50257-token vocabulary (LayerNorm, learned positions, standard SAEs at resid_pre).
SIZES: dict[str, dict] = {
    "gemma2_d256": dict(family="gemma2", n_layers=6, d_model=256, n_heads=4, n_key_value_heads=2, d_head=64,
                        d_mlp=1024, d_vocab=4096, d_sae=2048, sae_architecture="jumprelu", sites=(1, 3, 5)),
    "gemma2_d512": dict(family="gemma2", n_layers=6, d_model=512, n_heads=8, n_key_value_heads=4, d_head=64,
                        d_mlp=2048, d_vocab=8192, d_sae=4096, sae_architecture="jumprelu", sites=(1, 3, 5)),
    "gemma2_d1024_v64k": dict(family="gemma2", n_layers=4, d_model=1024, n_heads=8, n_key_value_heads=4, d_head=128,
                              d_mlp=4096, d_vocab=65536, d_sae=4096, sae_architecture="jumprelu", sites=(1, 2, 3)),
    "gpt2_d512_v50k": dict(family="gpt2", n_layers=6, d_model=512, n_heads=8, d_head=64, d_mlp=2048, d_vocab=50257,
                           d_sae=2048, sae_architecture="standard", sites=(2, 4, 5), hook="resid_pre"),
}
# The run's settings, scaled to stay under ~2.5 GB per measurement; batch sizes are the methods' defaults
# except where noted (IG's internal batch on the largest model, the mask's lambda count).
SEQ_LEN = 30
N_TRAIN, N_TEST = 32, 32
METHODS = ("attribution_patching", "binary_mask", "integrated_gradients", "activation_patching", "evaluator")
OPTIONS = {
    "binary_mask": {"lambdas": [0.001, 0.01, 0.1, 1.0], "steps": 3, "adaptive": False},
    "integrated_gradients": {},
    "attribution_patching": {},
    "activation_patching": {},
}
SIZE_OPTIONS = {"gemma2_d1024_v64k": {"integrated_gradients": {"internal_batch_size": 80, "n_steps": 5}},
                "gpt2_d512_v50k": {"integrated_gradients": {"internal_batch_size": 80, "n_steps": 5}}}
MAX_ROWS = {"gemma2_d256": 512, "gemma2_d512": 256, "gemma2_d1024_v64k": 128, "gpt2_d512_v50k": 128}
TOLERANCE = 0.25


def arch_of(size: str):
    from bench.plan.arch import Arch, _from_table

    spec = dict(SIZES[size])
    sites, hook = spec.pop("sites"), spec.pop("hook", "resid_post")
    cfg = _from_table({k: v for k, v in spec.items() if k not in ("d_sae", "sae_architecture")}, size)
    cfg["n_ctx"] = 64
    saes = [(f"blocks.{L}.hook_{hook}", {"architecture": spec["sae_architecture"], "d_sae": spec["d_sae"]}) for L in sites]
    return Arch(size, cfg, saes, "plan_validation")


def settings_of(size: str):
    from bench.plan.estimate import Settings

    opts = {m: dict(o) for m, o in OPTIONS.items()}
    for m, o in SIZE_OPTIONS.get(size, {}).items():
        opts.setdefault(m, {}).update(o)
    return Settings.defaults(n_train=N_TRAIN, n_test=N_TEST, seq_len=SEQ_LEN, dtype="float32", max_rows=MAX_ROWS[size],
                             methods=tuple(m for m in METHODS if m != "evaluator"), method_options=opts,
                             candidates_per_pos=64)


# ----- the child: one measurement -----------------------------------------------------------------

def _status() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmHWM", "VmRSS")):
            k, v = line.split(":")
            out[k] = int(v.split()[0]) * 1024
    return out


def _real_run(sp, st, name: str, small: bool = False):
    """One real run of ``name`` (``small``: a warm-up at tiny size)."""
    import torch

    from bench.eval.evaluate import Evaluator, SplitData
    from bench.plan.estimate import make_context, method_instance

    if name == "evaluator":
        n = 2 if small else st.n_test
        ctx = make_context(sp, st, n)
        universe = {s: c.clone() for s, c in ctx.candidates.items()}
        ev = Evaluator(sp, {"test": SplitData(ctx.train, ctx.replacement)}, universe, max_rows=2 if small else st.max_rows)
        return ev.lds([universe] * max(1, (2 if small else st.max_rows) // n), "test")
    opts = dict(st.method_options.get(name, {}))
    if small:
        opts.update({"binary_mask": {"lambdas": [0.01], "steps": 1, "batch_size": 2, "adaptive": False},
                     "integrated_gradients": {"batch_size": 2, "internal_batch_size": 4, "n_steps": 2},
                     "attribution_patching": {"batch_size": 2},
                     "activation_patching": {"max_prompts": 2, "forward_batch": 4}}[name])
    method = method_instance(name, opts)
    cfg = method.config
    if name == "attribution_patching":
        n = 2 if small else 2 * cfg.batch_size  # two batches: gradients accumulate in the masks
    elif name == "integrated_gradients":
        n = 2 if small else 2 * cfg.batch_size
    elif name == "activation_patching":
        n = 2 if small else st.n_train
    else:
        n = 4 if small else st.n_train
    ctx = make_context(sp, st, n)
    if name == "activation_patching":  # two chunks of candidates per site: the peak is one chunk's
        per_chunk = max(1, cfg.forward_batch // min(cfg.max_prompts, n))
        for s, c in ctx.candidates.items():
            keep = torch.zeros_like(c)
            flat = c.flatten().nonzero().flatten()[: 2 * per_chunk]
            keep.view(-1)[flat] = True
            ctx.candidates[s] = keep
    return method.discover(ctx)


def child(size: str, name: str) -> dict:
    import gc

    import torch

    from bench.plan.arch import build_meta
    from bench.plan.estimate import make_context

    torch.set_num_threads(1)
    torch.manual_seed(0)
    st = settings_of(size)
    sp = build_meta(arch_of(size), "float32", "drop", device="cpu")
    _real_run(sp, st, name, small=True)  # warm-up
    sp.__dict__.pop("_plan_contexts", None)
    gc.collect()
    # the task context of the measured run exists before the baseline, as in the plan
    n = {"evaluator": st.n_test, "attribution_patching": None, "integrated_gradients": None}.get(name, st.n_train)
    if n is not None:
        make_context(sp, st, n)
    if name in ("attribution_patching", "integrated_gradients"):
        from bench.plan.estimate import method_instance

        make_context(sp, st, 2 * method_instance(name, st.method_options.get(name, {})).config.batch_size)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = _status()
    t0 = time.perf_counter()
    out = _real_run(sp, st, name)
    wall = time.perf_counter() - t0
    after = _status()
    del out
    return {"measured_bytes": after["VmHWM"] - before["VmRSS"], "rss_before": before["VmRSS"], "wall_s": wall}


# ----- the parent ---------------------------------------------------------------------------------

def predict(size: str) -> dict[str, dict]:
    """The plan's working memory per method for ``size`` (meta device)."""
    from bench.plan.arch import build_meta, static_bytes
    from bench.plan.estimate import plan_evaluator, plan_method

    st = settings_of(size)
    sp = build_meta(arch_of(size), "float32", "drop")
    out = {"static_bytes": sum(static_bytes(sp).values())}
    for name in METHODS:
        if name == "evaluator":
            m, _ = plan_evaluator(sp, st, None)
        else:
            m = plan_method(sp, st, name, None)
        out[name] = {"predicted_bytes": m.working, "rows": m.rows, "breakdown": m.breakdown}
    return out


def measure(size: str, name: str) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-W", "ignore", __file__, "--child", size, name], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{size}/{name}: child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(sizes: list[str] | None = None, methods: list[str] | None = None) -> dict:
    import torch

    results = {"about": __doc__.split("\n\n")[0], "tolerance": TOLERANCE, "seq_len": SEQ_LEN, "n_train": N_TRAIN,
               "n_test": N_TEST, "method_options": OPTIONS, "size_options": SIZE_OPTIONS, "max_rows": MAX_ROWS,
               "machine": {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()},
               "sizes": {}}
    for size in sizes or list(SIZES):
        pred = predict(size)
        row = {"spec": {k: (list(v) if isinstance(v, tuple) else v) for k, v in SIZES[size].items()},
               "static_bytes": pred["static_bytes"], "methods": {}}
        for name in methods or METHODS:
            meas = measure(size, name)
            p = pred[name]["predicted_bytes"]
            ratio = p / meas["measured_bytes"] if meas["measured_bytes"] > 0 else float("inf")
            row["methods"][name] = {"predicted_mib": p / 2**20, "measured_mib": meas["measured_bytes"] / 2**20,
                                    "ratio": ratio, "rows": pred[name]["rows"], "wall_s": meas["wall_s"],
                                    "predicted_breakdown_mib": {k: v / 2**20 for k, v in pred[name]["breakdown"].items()}}
            print(f"{size:20s} {name:22s} predicted {p / 2**20:8.1f} MiB  measured {meas['measured_bytes'] / 2**20:8.1f} MiB"
                  f"  ratio {ratio:.3f}  ({meas['wall_s']:.1f} s)", flush=True)
        results["sizes"][size] = row
    ratios = [m["ratio"] for r in results["sizes"].values() for m in r["methods"].values()]
    results["max_abs_error"] = max(abs(r - 1) for r in ratios)
    results["all_within_tolerance"] = all(abs(r - 1) <= TOLERANCE for r in ratios)
    return results


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3])))
    else:
        import argparse

        ap = argparse.ArgumentParser()
        ap.add_argument("--sizes", default=None)
        ap.add_argument("--methods", default=None)
        ap.add_argument("--no-write", action="store_true")
        a = ap.parse_args()
        res = main(a.sizes.split(",") if a.sizes else None, a.methods.split(",") if a.methods else None)
        if not a.no_write:
            OUT.write_text(json.dumps(res, indent=2) + "\n")
        print(json.dumps({"max_abs_error": res["max_abs_error"], "all_within_tolerance": res["all_within_tolerance"]}))
