"""The speed issue's GPU check: one prepared script, run as one short call on a lent GPU (docs/gpu.md).

    timeout 560 python benchmarks/gpu_check.py --device cuda --budget-s 500 --run-cpu-baseline \\
        --out "$OUT/gpu_<device-name>.json" --md "$OUT/gpu_<device-name>.md" --all-dir "$OUT/runs"

Three parts, in this order (the cheap, decisive ones first, so a capped call keeps them), each timed
with ``torch.cuda.synchronize`` on CUDA and wrapped: a failure is recorded (one line and a traceback
tail) and the next part runs. The JSON is rewritten after every measurement (a temporary file, then
a rename), so nothing finished is lost to a kill.

* ``big_shape``: Gemma-2-9B with random weights and four random 16k JumpReLU SAEs after layers
  7/14/21/40, in the preset's CUDA dtype (bf16): the architecture ``bench plan`` resolves offline
  (``bench.plan.arch.resolve_arch``), built by ``bench.plan.arch.build_meta`` on a real device (the
  random-weight path of ``benchmarks/plan_validation.py``; nothing downloaded), task contexts from
  ``bench.plan.estimate.make_context``. Per method: seconds per mask step, per AtP batch, per IG
  batch at 10 steps, per exact-patching candidate, and working memory (``CostMeter``:
  ``torch.cuda.max_memory_allocated`` above the level before) against ``bench plan``'s prediction
  (``bench.plan.estimate.plan_method``, same settings; acceptance within 25%). Anchor: the paper's
  1.7-3.3 s per mask step (fp32); goal: >= 10x faster per step in bf16.
* ``determinism``: ``torch.use_deterministic_algorithms(True)`` alone (what ``--deterministic`` did
  before it also set the cuBLAS workspace) and with ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` set before CUDA starts, each in a fresh process:
  three methods run twice on the embedded model, scores compared bitwise, or the one-line error.
  Without ``--tiny`` also the real ``bench run --deterministic`` once.
* ``all`` (not with ``--skip-all``): ``python -m bench all --device DEV --no-figures`` on the embedded
  world (``--quick`` unless ``--all-full``), its wall time against a CPU run (``--run-cpu-baseline``
  on this machine, or ``--cpu-results DIR``) and its F rows against that run's (``F_ATOL``).

``--tiny``: a five-layer d_model-64 model, d_sae 256, 8-token prompts: seconds on a CPU
(``tests/test_gpu_check.py``); its timings prove the script runs, they are not speeds.
``GPU_CHECK_FAIL=name[,name]`` (a part, ``big_shape.<method>``) raises there: the test's planted failure.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SCHEMA = "gpu_check/1"
FAIL_ENV = "GPU_CHECK_FAIL"
PRESET = "gemma-2-9b"
PAPER_STEP_S = (1.7, 3.3)  # the paper's seconds per mask step (Gemma-2-9B, fp32): the anchor
GOAL_SPEEDUP = 10.0  # the goal: >= 10x faster per mask step in bf16
PLAN_TOL = 0.25  # the plan's acceptance, as in benchmarks/plan_validation.py
CUBLAS = ":4096:8"
# F rows of a CUDA run against a CPU run. F is a ratio of logit-difference gaps of order 1. The two
# devices sum in different orders (CUDA's blocked fp32 reductions, TF32 where a flag allows it, bf16
# where the preset asks for it, against the CPU's fp32 order), which moves a logit difference by
# ~1e-6 relative in fp32 and by ~1e-3 with TF32; 1e-3 absolute on F covers fp32 and TF32 with room.
# A discrete choice that flips (a TopK tie, a mask logit at exactly 0, a ranking tie) changes a
# circuit: such rows are counted beyond the tolerance (or unmatched, if a size changes), not hidden.
F_ATOL = 1e-3
GIB = 2**30

BIG = {"n_train": 32, "seq_len": 40, "ap_chunks": 4, "repeats": 2, "options": {
    "binary_mask": {"lambdas": [0.01], "steps": 3, "adaptive": False, "restarts": 1, "n_log": 0, "batch_size": 16},
    "attribution_patching": {"batch_size": 32},
    "integrated_gradients": {"n_steps": 10, "batch_size": 16, "internal_batch_size": 80},
    "activation_patching": {"max_prompts": 8, "forward_batch": 128}}}
TINY = {"n_train": 8, "seq_len": 8, "ap_chunks": 2, "repeats": 1, "options": {
    "binary_mask": {"lambdas": [0.01], "steps": 3, "adaptive": False, "restarts": 1, "n_log": 0, "batch_size": 4},
    "attribution_patching": {"batch_size": 8},
    "integrated_gradients": {"n_steps": 10, "batch_size": 4, "internal_batch_size": 20},
    "activation_patching": {"max_prompts": 4, "forward_batch": 16}}}
TINY_ARCH = dict(family="gemma2", n_layers=5, d_model=64, n_heads=4, n_key_value_heads=2, d_head=16, d_mlp=256, d_vocab=512)
TINY_SAE = {"d_sae": 256, "architecture": "jumprelu", "layers": (1, 2, 3, 4)}
UNIT = {"binary_mask": "step", "attribution_patching": "batch", "integrated_gradients": "batch",
        "activation_patching": "candidate"}


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:400] if text else ''}"


def planted(name: str) -> None:
    if name in {x.strip() for x in os.environ.get(FAIL_ENV, "").split(",")}:
        raise RuntimeError(f"planted failure in {name} ({FAIL_ENV})")


class Skipped(Exception):
    """Not run, for a stated reason (time budget, memory): recorded as ``skipped``, not an error."""


class Report:
    """The JSON, rewritten whole after every measurement (temporary file, then an atomic rename)."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data = path, data
        self.write()

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        os.replace(tmp, self.path)


class Budget:
    def __init__(self, seconds: float | None):
        self.seconds, self.t0 = seconds, time.perf_counter()

    def left(self) -> float:
        return float("inf") if self.seconds is None else self.seconds - (time.perf_counter() - self.t0)

    def need(self, what: str, seconds: float = 1.0) -> None:
        if self.left() < seconds:
            raise Skipped(f"{what}: {max(0.0, self.left()):.0f} s of --budget-s {self.seconds:g} left, needs ~{seconds:g} s")


def run_part(rep: Report, name: str, fn, *args) -> None:
    part = rep.data["parts"][name] = {"status": "running", "error": None}
    rep.write()
    t0 = time.perf_counter()
    try:
        planted(name)
        fn(part, rep, *args)
        subs = [v for v in part.get("methods", {}).values() if isinstance(v, dict)]
        part["status"] = "partial" if any(s.get("status") == "error" for s in subs) else "ok"
    except Skipped as exc:
        part.update(status="skipped", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - a part's failure is recorded; the next part runs
        part.update(status="error", error=one_line(exc), traceback_tail=traceback.format_exc()[-2000:])
    finally:
        part["seconds"] = round(time.perf_counter() - t0, 3)
        rep.write()


def device_info(device: str) -> dict:
    import torch

    info = {"device": device, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "cpu_count": os.cpu_count()}
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(torch.device(device))
        info.update(name=p.name, total_memory_bytes=p.total_memory, capability=f"{p.major}.{p.minor}",
                    cuda=torch.version.cuda, matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
                    cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                    float32_matmul_precision=torch.get_float32_matmul_precision())
    else:
        info["name"] = platform.processor() or "cpu"
    return info


def sync(device: str) -> None:
    if device.startswith("cuda"):
        sys.modules["torch"].cuda.synchronize(device)


# ----- part big_shape -----------------------------------------------------------------------------

def arch_for(tiny: bool):
    """The architecture: ``bench plan``'s offline Gemma-2-9B resolution, or a tiny Gemma-2-family table."""
    from bench.plan.arch import Arch, _from_table, resolve_arch

    if not tiny:
        return resolve_arch(PRESET)
    cfg = _from_table(dict(TINY_ARCH), "gpu-check-tiny")
    cfg["n_ctx"] = 64
    saes = [(f"blocks.{L}.hook_resid_post", {"architecture": TINY_SAE["architecture"], "d_sae": TINY_SAE["d_sae"]})
            for L in TINY_SAE["layers"]]
    return Arch("gpu-check-tiny", cfg, saes, "gpu_check --tiny: a Gemma-2-family table (bench.plan.arch._from_table)")


def settings_for(shape: dict, dtype: str):
    from bench.plan.estimate import Settings

    opts = {m: dict(o) for m, o in shape["options"].items()}
    return Settings.defaults(n_train=shape["n_train"], n_test=shape["n_train"], seq_len=shape["seq_len"], dtype=dtype,
                             methods=tuple(opts), method_options=opts)


def measure_method(name: str, sp, st, shape: dict, device: str, entry: dict) -> None:
    """Warm up, then time ``name`` ``repeats`` times under the harness's CostMeter; fills ``entry``."""
    import torch

    from bench.api import MethodContext
    from bench.plan.estimate import make_context, method_instance
    from bench.run.costs import CostMeter

    opts = shape["options"][name]
    method = method_instance(name, opts)
    key = {"attribution_patching": "batch_size", "integrated_gradients": "batch_size", "activation_patching": "max_prompts"}.get(name)
    n = min(getattr(method.config, key), st.n_train) if key else st.n_train  # prompts, as the plan's simulation has them
    ctx = make_context(sp, st, n)
    units = 1
    if name == "binary_mask":
        ld_ref = torch.zeros(n, device=sp.device)
        units = round(1.1 * opts["steps"])  # the schedule's steps (10% past the temperature ramp)

        warm = lambda: method.sweep(ctx, opts["lambdas"][:1], ld_ref, steps=1)  # noqa: E731
        run = lambda: method.sweep(ctx, opts["lambdas"][:1], ld_ref, steps=opts["steps"])  # noqa: E731
    elif name == "integrated_gradients":
        warm, run = (lambda: method_instance(name, {**opts, "n_steps": 2}).discover(ctx)), (lambda: method.discover(ctx))
    elif name == "activation_patching":
        per_chunk = max(1, opts["forward_batch"] // n)

        def keep_first(k: int) -> MethodContext:
            cands = {}
            for s, c in ctx.candidates.items():
                flat = torch.zeros(c.numel(), dtype=torch.bool, device=c.device)
                flat[c.flatten().nonzero().flatten()[:k]] = True
                cands[s] = flat.view_as(c)
            return MethodContext(sp, ctx.train, ctx.replacement, cands, seed=0)

        small, timed_ctx = keep_first(per_chunk), keep_first(shape["ap_chunks"] * per_chunk)
        units = int(sum(int(c.sum()) for c in timed_ctx.candidates.values()))
        entry["candidates_timed"] = units

        warm, run = (lambda: method.discover(small)), (lambda: method.discover(timed_ctx))
    else:
        warm = run = lambda: method.discover(ctx)  # noqa: E731
    warm()
    sync(device)
    walls, first = [], None
    for _ in range(shape["repeats"]):
        gc.collect()
        with CostMeter(sp.counter, sp.device) as cost:
            run()
        walls.append(cost.wall_seconds)
        if first is None:
            first = cost
            if device.startswith("cuda"):
                entry["peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated(torch.device(device)))
                entry["allocated_before_bytes"] = int(cost._base)
    entry.update(context_prompts=n, wall_s=walls, units_timed=units,
                 working_bytes=int(first.peak_memory_mb * 2**20), memory_measure=first.memory_measure,
                 passes=first.passes)
    entry[f"per_{UNIT[name]}_s"] = statistics.median(walls) / max(1, units)


def part_big_shape(part: dict, rep: Report, args, budget: Budget) -> None:
    import torch

    from bench.model.presets import get_preset
    from bench.plan.arch import build_meta, static_bytes
    from bench.plan.estimate import plan_method

    device = args.device
    dtype = args.dtype or get_preset(PRESET).dtype_on(device)
    shape = TINY if args.tiny else BIG
    arch = arch_for(args.tiny)
    st = settings_for(shape, dtype)
    cfg = arch.cfg
    part.update(arch={k: cfg.get(k) for k in ("n_layers", "d_model", "d_mlp", "n_heads", "n_key_value_heads", "d_head",
                                              "d_vocab", "n_ctx")},
                arch_source=arch.source, saes=[{"hook": h, "d_sae": int(c["d_sae"]), "architecture": c.get("architecture")}
                                               for h, c in arch.saes],
                dtype=dtype, seq_len=st.seq_len, n_train=st.n_train, ablation=st.ablation, error_policy=st.error_policy,
                options=shape["options"], repeats=shape["repeats"], plan_tolerance=PLAN_TOL, methods={})
    rep.write()
    # 1. the plan's predictions (meta device: no storage), the methods' own code at these settings
    t0 = time.perf_counter()
    meta = build_meta(arch, dtype, st.error_policy)
    part["predicted_static_bytes"] = static_bytes(meta)
    predicted = {}
    for name in shape["options"]:
        try:
            planted(f"big_shape.{name}.plan")
            predicted[name] = plan_method(meta, st, name, None)
        except Exception as exc:  # noqa: BLE001 - a method without a prediction is still measured
            part["methods"][name] = {"plan_error": one_line(exc)}
    part["plan_s"] = round(time.perf_counter() - t0, 3)
    del meta
    rep.write()
    # 2. the model and SAEs with random weights, on the device
    budget.need("building the model", 30 if not args.tiny else 1)
    sync(device)
    t0 = time.perf_counter()
    sp = build_meta(arch, dtype, st.error_policy, device=device)  # SplicedModel freezes the weights, as in a run
    sync(device)
    part["build_s"] = round(time.perf_counter() - t0, 3)
    part["static_bytes"] = static_bytes(sp)
    if device.startswith("cuda"):
        part["allocated_after_build_bytes"] = int(torch.cuda.memory_allocated(torch.device(device)))
    rep.write()
    total_mem = torch.cuda.get_device_properties(torch.device(device)).total_memory if device.startswith("cuda") else None
    for name in shape["options"]:
        entry = part["methods"].setdefault(name, {})
        entry.update(status="running", unit=UNIT[name])
        rep.write()
        try:
            planted(f"big_shape.{name}")
            budget.need(name, 20 if not args.tiny else 1)
            pm = predicted.get(name)
            if pm is not None:
                entry.update(predicted_working_bytes=int(pm.working), predicted_rows=pm.rows,
                             predicted_breakdown_bytes={k: int(v) for k, v in pm.breakdown.items()})
            if total_mem is not None and pm is not None:
                need = (torch.cuda.memory_allocated(torch.device(device)) + pm.working) * 1.05 + GIB
                if need > total_mem:
                    raise Skipped(f"predicted peak {need / GIB:.1f} GiB (plan, with 5% slack + 1 GiB) exceeds the "
                                  f"device's {total_mem / GIB:.1f} GiB")
            measure_method(name, sp, st, shape, device, entry)
            if pm is not None and entry["working_bytes"] > 0:
                entry["ratio_predicted_to_measured"] = pm.working / entry["working_bytes"]
                entry["within_plan_tolerance"] = abs(entry["ratio_predicted_to_measured"] - 1) <= PLAN_TOL
            entry["status"] = "ok"
        except Skipped as exc:
            entry.update(status="skipped", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - one method's failure (an OOM, a bug) leaves the others
            entry.update(status="error", error=one_line(exc), traceback_tail=traceback.format_exc()[-1500:])
        finally:
            sp.__dict__.pop("_plan_contexts", None)
            gc.collect()
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            rep.write()
    step = part["methods"].get("binary_mask", {}).get("per_step_s")
    on_gpu = device.startswith("cuda") and not args.tiny
    part["anchor"] = {"paper_mask_step_s_fp32": list(PAPER_STEP_S), "goal_speedup": GOAL_SPEEDUP, "mask_step_s": step,
                      "speedup_vs_paper": [PAPER_STEP_S[0] / step, PAPER_STEP_S[1] / step] if step and on_gpu else None,
                      "meets_goal": (PAPER_STEP_S[0] / step >= GOAL_SPEEDUP) if step and on_gpu else None,
                      "note": None if on_gpu else "not a speed: compared only for the Gemma-2-9B shape on CUDA"}
    del sp
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


# ----- part determinism ---------------------------------------------------------------------------

def determinism_child(device: str, mode: str) -> dict:
    """In a fresh process (the parent sets CUBLAS_WORKSPACE_CONFIG for mode "cublas"): three methods run
    twice under ``torch.use_deterministic_algorithms(True)``, scores compared bitwise."""
    import torch

    rec = {"CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"), "methods": {}}
    torch.use_deterministic_algorithms(True)
    try:
        rec["methods"] = _twice_each(device)
        rec["works"] = all(m.get("bitwise_equal") is True for m in rec["methods"].values())
        errors = [m["error"] for m in rec["methods"].values() if m.get("error")]
        rec["error"] = errors[0] if errors else None
    except Exception as exc:  # noqa: BLE001 - the one-line refusal is the result
        rec.update(works=False, error=one_line(exc))
    return {mode: rec}


def _twice_each(device: str) -> dict:
    import torch

    from bench.model.loading import load_world
    from bench.plan.estimate import Settings, make_context, method_instance

    sp = load_world("embedded", device=device).spliced
    st = Settings.defaults(n_train=8, n_test=8, seq_len=12, dtype="float32", methods=())
    ctx = make_context(sp, st, 8)
    ld_ref = torch.zeros(8, device=sp.device)
    runs = {
        "attribution_patching": lambda: method_instance("attribution_patching", {"batch_size": 8}).discover(ctx).values,
        "integrated_gradients": lambda: method_instance("integrated_gradients", {"n_steps": 4, "batch_size": 8,
                                                                                 "internal_batch_size": 32}).discover(ctx).values,
        "binary_mask": lambda: method_instance("binary_mask", {"lambdas": [0.01], "steps": 3, "adaptive": False, "n_log": 0,
                                                               "batch_size": 4}).sweep(ctx, [0.01], ld_ref, steps=3)[0][0],
    }
    res = {}
    for name, fn in runs.items():
        try:
            torch.manual_seed(0)
            a = {s: t.detach().cpu() for s, t in fn().items()}
            torch.manual_seed(0)
            b = {s: t.detach().cpu() for s, t in fn().items()}
            diff = max(float((a[s].double() - b[s].double()).abs().max()) for s in a)
            res[name] = {"bitwise_equal": all(torch.equal(a[s], b[s]) for s in a), "max_abs_diff": diff}
        except Exception as exc:  # noqa: BLE001 - the one-line refusal is the result
            res[name] = {"bitwise_equal": None, "error": one_line(exc)}
    return res


def _child_env(cublas: bool, one_thread: bool = False) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    if one_thread:  # --tiny on a shared CPU: OpenMP threads spinning against other load make tiny runs 10-50x slower
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("CUBLAS_WORKSPACE_CONFIG", None)
    env.pop(FAIL_ENV, None)
    if cublas:
        env["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS
    return env


def part_determinism(part: dict, rep: Report, args, budget: Budget) -> None:
    cuda = args.device.startswith("cuda")
    part["modes"] = {"cli": "torch.use_deterministic_algorithms(True) only (the variable unset)",
                     "cublas": f"the same with CUBLAS_WORKSPACE_CONFIG={CUBLAS} set before CUDA starts"}
    # One fresh process per mode (the variable must be set before CUDA starts); on a CPU it is inert: one mode.
    for mode in ("cli", "cublas") if cuda else ("cli",):
        budget.need("determinism child", 20)
        proc = subprocess.run([sys.executable, "-W", "ignore", __file__, "--determinism-child", mode, "--device", args.device],
                              env=_child_env(mode == "cublas", args.tiny), cwd=ROOT, capture_output=True, text=True,
                              timeout=max(10.0, min(300.0, budget.left())))
        tail = proc.stderr.strip().splitlines()
        part[mode] = (json.loads(proc.stdout.strip().splitlines()[-1])[mode] if proc.returncode == 0 else
                      {"works": False, "error": f"child exited {proc.returncode}: {tail[-1] if tail else ''}"})
        rep.write()
    if not cuda:
        part["cublas"] = {"same_as": "cli", "works": part["cli"].get("works"), "note": "CUBLAS_WORKSPACE_CONFIG is inert on a CPU"}
    if not args.tiny:  # the real CLI, as a user would run it (no CUBLAS_WORKSPACE_CONFIG)
        budget.need("bench run --deterministic", 60)
        out = work_dir(args) / "deterministic_run"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, "-m", "bench", "run", "--tasks", "dict_keyerror", "--methods", "attribution_patching",
               "--quick", "--no-figures", "--no-progress", "--deterministic", "--device", args.device, "--out", str(out)]
        part["bench_run"] = dict(command=" ".join(cmd[1:]), **run_cmd(cmd, _child_env(False), min(300.0, budget.left())))
    part["works_as_cli_is"] = part.get("bench_run", part.get("cli", {})).get("works")
    part["works_with_cublas_config"] = part.get("cublas", {}).get("works")


def work_dir(args) -> Path:  # where the bench runs write: --all-dir, else beside --out
    return Path(args.all_dir) if args.all_dir else args.out.parent / (args.out.stem + "_runs")


# ----- part all -----------------------------------------------------------------------------------

def run_cmd(cmd: list[str], env: dict, timeout: float) -> dict:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"rc": None, "wall_s": round(time.perf_counter() - t0, 3), "works": False,
                "error": f"timed out after {timeout:.0f} s (the time budget)"}
    wall = time.perf_counter() - t0
    errs = [ln for ln in proc.stderr.splitlines() if ln.startswith("error") or "Error" in ln]
    return {"rc": proc.returncode, "wall_s": round(wall, 3), "works": proc.returncode == 0,
            "error": (errs[0][:500] if errs else proc.stderr.strip()[-500:]) if proc.returncode else None}


def compare_rows(gpu_dir: Path, cpu_dir: Path, atol: float = F_ATOL) -> dict:
    """F rows (every form) of two results folders matched on their keys; |difference| against ``atol``."""
    import pandas as pd

    from bench.eval.evaluate import F_FORMS

    def f_rows(d: Path):
        t = pd.read_parquet(d / "results.parquet")
        t = t[t["metric"].isin(F_FORMS) & (t["status"] == "ok")]
        keys = [c for c in ("task", "method", "seed", "split", "circuit_kind", "circuit", "k", "metric", "sample",
                            "site", "pos", "latent") if c in t.columns]
        return t[[*keys, "value"]].drop_duplicates(keys), keys

    g, keys = f_rows(gpu_dir)
    c, _ = f_rows(cpu_dir)
    m = g.merge(c, on=keys, how="outer", suffixes=("_gpu", "_cpu"), indicator=True)
    both = m[m["_merge"] == "both"].copy()
    both["abs_diff"] = (both["value_gpu"] - both["value_cpu"]).abs()
    both.loc[both["value_gpu"].isna() & both["value_cpu"].isna(), "abs_diff"] = 0.0
    beyond = both[~(both["abs_diff"] <= atol)]
    by_method = {meth: {"matched": len(grp), "max_abs_diff": float(grp["abs_diff"].max()),
                        "beyond_tolerance": int((~(grp["abs_diff"] <= atol)).sum())}
                 for meth, grp in both.groupby("method")}
    worst = both.sort_values("abs_diff", ascending=False).head(5)
    only_gpu, only_cpu = int((m["_merge"] == "left_only").sum()), int((m["_merge"] == "right_only").sum())
    return {"f_atol": atol, "rows_gpu": len(g), "rows_cpu": len(c), "matched": len(both), "only_gpu": only_gpu,
            "only_cpu": only_cpu, "max_abs_diff": float(both["abs_diff"].max()) if len(both) else None,
            "beyond_tolerance": len(beyond), "by_method": by_method,
            "worst": json.loads(worst[[*keys, "value_gpu", "value_cpu", "abs_diff"]].to_json(orient="records")),
            "equal_within_tolerance": bool(len(both) and not len(beyond) and not only_gpu and not only_cpu)}


def _bench_all(device: str, out: Path, quick: bool, timeout: float, tiny: bool) -> dict:
    if out.exists() and any(out.iterdir()):
        raise RuntimeError(f"{out} is not empty: a resumed run would time only the missing cells; give a fresh --all-dir")
    cmd = [sys.executable, "-m", "bench", "all", "--device", device, "--out", str(out), "--no-figures", "--no-progress",
           *(["--quick"] if quick else [])]
    return dict(command=" ".join(cmd[1:]), **run_cmd(cmd, _child_env(False, tiny and device == "cpu"), timeout))


def part_all(part: dict, rep: Report, args, budget: Budget) -> None:
    quick = args.tiny or not args.all_full
    base = work_dir(args)
    part.update(quick=quick, f_atol=F_ATOL, f_atol_why=("CUDA vs CPU summation order (blocked fp32 reductions; TF32 or "
                                                        "bf16 where enabled): ~1e-6 relative in fp32, ~1e-3 with TF32; "
                                                        "a flipped discrete choice changes a circuit and is counted"))
    budget.need(f"bench all --device {args.device}", 30)
    part["device_run"] = _bench_all(args.device, base / args.device.replace(":", "_"), quick, budget.left(), args.tiny)
    rep.write()
    cpu_dir = Path(args.cpu_results) if args.cpu_results else None
    if args.run_cpu_baseline and args.device != "cpu":
        budget.need("bench all --device cpu (baseline)", 30)
        part["cpu_run"] = _bench_all("cpu", base / "cpu", quick, budget.left(), False)
        cpu_dir = base / "cpu"
        rep.write()
    if cpu_dir is None:
        return
    run_json = cpu_dir / "run.json"
    cpu_wall = part.get("cpu_run", {}).get("wall_s") or (json.loads(run_json.read_text()).get("seconds") if run_json.is_file() else None)
    dev_wall = part["device_run"]["wall_s"]
    part["wall"] = {"device_s": dev_wall, "cpu_s": cpu_wall, "cpu_source": "cpu_run" if "cpu_run" in part else str(run_json),
                    "speedup": (cpu_wall / dev_wall) if cpu_wall and dev_wall else None}
    part["comparison"] = compare_rows(base / args.device.replace(":", "_"), cpu_dir)


# ----- the table ----------------------------------------------------------------------------------

def _fmt(x, unit: str = "") -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return (f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}") + unit
    return f"{x}{unit}"


def format_table(data: dict) -> str:
    dev, parts = data.get("device", {}), data.get("parts", {})
    lines = [f"Device: {dev.get('name')} ({data.get('args', {}).get('device')}), torch {dev.get('torch')}; "
             f"{'TINY shape (not speeds)' if data.get('tiny') else 'Gemma-2-9B shape'}; started {data.get('started')}.", ""]
    big = parts.get("big_shape", {})
    mem, scale = ("MiB", 2**20) if data.get("tiny") else ("GiB", GIB)
    lines += [f"big_shape ({big.get('status')}; {big.get('dtype')}, {big.get('seq_len')} tokens; {big.get('error') or ''})", "",
              f"| method | unit | s per unit | working {mem} measured | planned | ratio | status |", "|---|---|---:|---:|---:|---:|---|"]
    for name, e in big.get("methods", {}).items():
        w, p = e.get("working_bytes"), e.get("predicted_working_bytes")
        lines.append(f"| {name} | {e.get('unit', '')} | {_fmt(e.get(f'per_{UNIT.get(name)}_s'))} | "
                     f"{_fmt(w / scale if w is not None else None)} | {_fmt(p / scale if p is not None else None)} | "
                     f"{_fmt(e.get('ratio_predicted_to_measured'))} | {e.get('status')}{': ' + e['error'] if e.get('error') else ''} |")
    a = big.get("anchor") or {}
    lines += ["", f"Mask step: {_fmt(a.get('mask_step_s'), ' s')} against the paper's {PAPER_STEP_S[0]}-{PAPER_STEP_S[1]} s (fp32); "
              f"speedup {a.get('speedup_vs_paper')}, goal >= {GOAL_SPEEDUP:g}x: {a.get('meets_goal')}.", ""]
    det = parts.get("determinism", {})
    lines.append(f"Determinism ({det.get('status')}): as the CLI is: {det.get('works_as_cli_is')} "
                 f"({(det.get('bench_run') or det.get('cli') or {}).get('error') or ''}); with CUBLAS_WORKSPACE_CONFIG: {det.get('works_with_cublas_config')}.")
    al = parts.get("all", {})
    cmp, wall = al.get("comparison") or {}, al.get("wall") or {}
    lines.append(f"bench all ({al.get('status')}{'; ' + al['error'] if al.get('error') else ''}): device "
                 f"{_fmt((al.get('device_run') or {}).get('wall_s'), ' s')}, CPU {_fmt(wall.get('cpu_s'), ' s')}, speedup "
                 f"{_fmt(wall.get('speedup'))}; F rows matched {cmp.get('matched')}, beyond {cmp.get('f_atol')}: "
                 f"{cmp.get('beyond_tolerance')}, max |diff| {_fmt(cmp.get('max_abs_diff'))}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="the JSON to write, e.g. benchmarks/gpu_h100.json")
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--dtype", default=None, help=f"big_shape's dtype (default: the {PRESET} preset's on the device)")
    ap.add_argument("--tiny", action="store_true", help="a tiny shape and a quick bench all: runs on a CPU in seconds")
    ap.add_argument("--skip-all", action="store_true", help="leave out the bench all part")
    ap.add_argument("--all-full", action="store_true", help="bench all at the full defaults instead of --quick")
    ap.add_argument("--all-dir", default=None, help="where bench all writes (default: beside --out)")
    ap.add_argument("--cpu-results", default=None, help="a CPU bench all results folder to compare rows and wall time with")
    ap.add_argument("--run-cpu-baseline", action="store_true", help="also run bench all on this machine's CPU, to compare")
    ap.add_argument("--budget-s", type=float, default=None, help="wall-clock budget: parts and runs past it are skipped")
    ap.add_argument("--md", type=Path, default=None, help="also write the results table (markdown) here")
    ap.add_argument("--table", type=Path, default=None, help="print the table of an existing JSON and exit")
    ap.add_argument("--determinism-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.table:
        print(format_table(json.loads(args.table.read_text())), end="")
        return 0
    if args.determinism_child:
        print(json.dumps(determinism_child(args.device, args.determinism_child)))
        return 0
    if args.out is None:
        ap.error("--out is required")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from bench.run.setup import check_device

    check_device(args.device)
    if args.tiny and args.device == "cpu":
        torch.set_num_threads(1)  # a dry run on a shared CPU (see _child_env)
    budget = Budget(args.budget_s)
    data = {"schema": SCHEMA, "about": __doc__.split("\n\n")[0], "argv": sys.argv[1:] if argv is None else argv,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "determinism_child"},
            "tiny": args.tiny, "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "device": device_info(args.device), "parts": {}}
    rep = Report(args.out, data)
    run_part(rep, "big_shape", part_big_shape, args, budget)
    run_part(rep, "determinism", part_determinism, args, budget)
    if args.skip_all:
        data["parts"]["all"] = {"status": "skipped", "error": "--skip-all"}
    else:
        run_part(rep, "all", part_all, args, budget)
    data["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    data["seconds"] = round(time.perf_counter() - budget.t0, 3)
    rep.write()
    if args.md:
        args.md.write_text(format_table(data))
    print(format_table(data), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
