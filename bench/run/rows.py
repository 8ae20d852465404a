"""Rows: what a cell writes. One row per (circuit, split, metric), plus a task and seed's reference
rows (baselines, universe size, position labels) and a failed cell's error row. The long table's
columns are defined in :mod:`bench.run.results`."""

from __future__ import annotations

import math

import torch

from bench.api import Circuit
from bench.run.config import RunConfig
from bench.run.keys import code_version
from bench.run.setup import TaskSetup
from bench.version import SCHEMA_VERSION

REFERENCE = "(reference)"


def node_rows(base: dict, i: int, circuit: Circuit, scores: dict[str, torch.Tensor] | None) -> list[dict]:
    rows = []
    for s, m in circuit.masks.items():
        for pos, lat in m.nonzero().tolist():
            val = float(scores[s][pos, lat]) if scores is not None else float("nan")
            rows.append(dict(base, circuit=i, metric="circuit_node", site=s, pos=pos, latent=lat, value=val))
    return rows


def trace_rows(base: dict, i: int, trace: dict[str, list[float]]) -> list[dict]:
    steps = trace.get("step", [])
    rows = []
    for name, vals in trace.items():
        if name == "step":
            continue
        for j, v in enumerate(vals):
            rows.append(dict(base, circuit=i, sample=int(steps[j]) if j < len(steps) else j, metric=f"trace_{name}", value=float(v)))
    return rows


def reference_rows(setup: TaskSetup) -> list[dict]:
    """Per task and seed: the baselines (per prompt on test), universe size, position labels."""
    ev = setup.evaluator
    base = {"method": REFERENCE, "method_version": "", "params": "{}"}
    rows = []
    for split in ("test", "train"):
        for name, v in ev.per_prompt[split].items():
            extra = {"per_prompt": v.tolist()} if split == "test" else {}
            rows.append(dict(base, split=split, metric=name, value=float(v.mean()), **extra))
    n_train_cand = int(sum(int(c.sum()) for c in setup.ctx.candidates.values()))
    rows += [dict(base, metric="n_universe", value=float(setup.n_universe)),
             dict(base, metric="n_train_candidates", value=float(n_train_cand)),
             dict(base, metric="n_positions", value=float(setup.test.n_pos))]
    rows += [dict(base, metric="position_label", pos=p, text=lab, value=float("nan"))
             for p, lab in enumerate(setup.position_labels)]
    return rows


def error_rows(method_name: str, exc: BaseException | str) -> list[dict]:
    msg = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    msg = (msg.splitlines() or [""])[0][:500]
    return [{"method": method_name, "method_version": "", "params": "{}", "metric": "error", "value": math.nan,
             "status": "error", "error": msg}]


def common_columns(cfg: RunConfig, world, task: str, task_version: str, seed: int, n_train: int, n_test: int) -> dict:
    """The columns every row of one task's cells shares."""
    return {
        "schema_version": SCHEMA_VERSION, "task": task, "task_version": task_version,
        "model": world.model_name, "preset": world.preset.name,
        "sae_ids": ",".join(cfg.sites) if cfg.sites else ",".join(world.sae_ids),
        "error_policy": cfg.error_policy, "ablation": cfg.ablation, "split": "", "seed": seed,
        "n_train": n_train, "n_test": n_test, "size_unit": "nodes", "code_version": code_version(),
    }
