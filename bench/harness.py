"""The harness: task -> spliced model -> method -> circuits -> evaluator -> rows.

A *cell* is one (task, method) pair under one setting (preset, error policy, ablation, seed,
sizes). Each cell's rows are written atomically the moment it finishes, under a key that hashes
everything the rows depend on, so a killed run resumes with only the missing cells and a method
that raises or returns garbage becomes error rows while every other cell completes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, field

import torch

from bench import SCHEMA_VERSION
from bench.ablation import ABLATIONS, candidates, make_replacement
from bench.costs import CostMeter
from bench.data import split_train_test, tokenize_records
from bench.errors import MethodFailure, UsageError, did_you_mean
from bench.evaluate import Evaluator, size_grid, top_k_circuit
from bench.spliced import ERROR_POLICIES
from bench.api import Circuit, CircuitSet, Method, MethodContext, Scores

log = logging.getLogger(__name__)

DEFAULT_TASKS = ("dict_keyerror", "list_indexerror", "sva", "ioi")
DEFAULT_METHODS = ("binary_mask", "attribution_patching", "integrated_gradients", "activation_patching")
REFERENCE = "(reference)"


@dataclass(frozen=True)
class RunConfig:
    """One benchmark setting; every field is recorded with the results."""

    preset: str = "embedded"
    tasks: tuple[str, ...] = DEFAULT_TASKS
    methods: tuple[str, ...] = DEFAULT_METHODS
    error_policy: str = "drop"
    ablation: str = "mean"
    seed: int = 0
    n_train: int = 64
    n_test: int = 128
    n_grid: int = 14
    n_knockout: int = 20
    quick: bool = False
    method_options: dict = field(default_factory=dict)
    world_dir: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.error_policy not in ERROR_POLICIES:
            raise UsageError(did_you_mean(self.error_policy, ERROR_POLICIES, "error policy"))
        if self.ablation not in ABLATIONS:
            raise UsageError(did_you_mean(self.ablation, ABLATIONS, "ablation"))
        if self.n_train < 2 or self.n_test < 2:
            raise UsageError("--n-train and --n-test must be at least 2")
        if not self.tasks or not self.methods:
            raise UsageError("at least one task and one method are needed")


@dataclass
class TaskSetup:
    """Everything about one task that every method shares."""

    name: str
    version: str
    train: object
    test: object
    ctx: MethodContext
    evaluator: Evaluator
    tokens: list[str]


def _key(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def method_params(method: Method) -> dict:
    return method.config.to_dict()


def build_method(name: str, cfg: RunConfig) -> Method:
    from bench import registry

    cls = registry.load("method", name)
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise MethodFailure(f"{name!r} is not a bench Method subclass")
    opts = dict(cls.quick_overrides) if cfg.quick else {}
    opts.update(cfg.method_options.get(name, cfg.method_options.get(getattr(cls, "name", ""), {})))
    try:
        return cls(**opts)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"method {name!r}: bad option(s) {opts}: {exc}") from None


def load_task(name: str, cfg: RunConfig | None = None):
    from bench import registry
    from tasks.base import FileTask, Task

    if name.endswith((".json", ".jsonl")):
        return FileTask(name)
    cls = registry.load("task", name)
    task = cls() if isinstance(cls, type) else cls
    if not isinstance(task, Task):
        raise UsageError(f"task {name!r} does not implement tasks.base.Task")
    return task


def setup_task(task, world, cfg: RunConfig) -> TaskSetup:
    """Tokenize, split, fit the ablation and candidates, build the evaluator."""
    spliced = world.spliced
    # Generate enough records for both splits; pairs come in groups of up to 2.
    records = task.records(2 * (cfg.n_train + cfg.n_test), seed=cfg.seed)
    data = tokenize_records(records, world.tokenizer, task.name, task.version, source=getattr(task, "path", task.name))
    train, test = split_train_test(data, cfg.n_train, cfg.n_test, cfg.seed)
    if cfg.error_policy == "mean":
        spliced.fit_error_means(train.patch)
    repl_train = make_replacement(cfg.ablation, spliced, train, train)
    repl_test = make_replacement(cfg.ablation, spliced, test, train)
    cands = candidates(spliced.latents(train.clean), repl_train)
    ctx = MethodContext(spliced, train, repl_train, cands, seed=cfg.seed)
    evaluator = Evaluator(spliced, test, repl_test)
    tokens = world.tokenizer.convert_ids_to_tokens(test.clean[0].tolist())
    return TaskSetup(task.name, task.version, train, test, ctx, evaluator, tokens)


def validate_output(out: object, ctx: MethodContext, method_name: str) -> None:
    """Reject malformed method output with a reason (becomes an error row)."""
    if isinstance(out, Scores):
        missing = set(ctx.sites) - set(out.values)
        if missing:
            raise MethodFailure(f"{method_name}: scores missing sites {sorted(missing)}")
        for s in ctx.sites:
            v = out.values[s]
            want = (ctx.train.n_pos, ctx.spliced.d_sae(s))
            if not isinstance(v, torch.Tensor) or tuple(v.shape) != want:
                got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                raise MethodFailure(f"{method_name}: scores at {s} have shape {got}, expected {want}")
            if not torch.isfinite(v).all():
                raise MethodFailure(f"{method_name}: scores at {s} contain NaN or inf")
    elif isinstance(out, CircuitSet):
        if not out.circuits:
            raise MethodFailure(f"{method_name}: returned no circuits")
        for i, c in enumerate(out.circuits):
            for s in ctx.sites:
                m = c.masks.get(s)
                want = (ctx.train.n_pos, ctx.spliced.d_sae(s))
                if m is None or tuple(m.shape) != want or m.dtype != torch.bool:
                    raise MethodFailure(f"{method_name}: circuit {i} mask at {s} is not a bool tensor of shape {want}")
    else:
        raise MethodFailure(f"{method_name}: discover() returned {type(out).__name__}, expected Scores or CircuitSet")


def circuits_of(out: Scores | CircuitSet, ctx: MethodContext, n_grid: int) -> list[Circuit]:
    if isinstance(out, CircuitSet):
        return out.circuits
    n_cand = int(sum(c.sum() for c in ctx.candidates.values()))
    return [top_k_circuit(out.values, ctx.candidates, k) for k in size_grid(n_cand, n_grid)]


def nestedness(circuits: list[Circuit], cands: dict[str, torch.Tensor]) -> list[tuple[int, float]]:
    """For circuits sorted by size, the fraction of each one's nodes inside the next larger one."""
    sized = sorted(range(len(circuits)), key=lambda i: circuits[i].n_nodes(cands))
    out = []
    for a, b in zip(sized, sized[1:]):
        na = circuits[a].n_nodes(cands)
        if na == 0:
            continue
        inter = sum(int((circuits[a].masks[s] & circuits[b].masks[s] & cands[s]).sum()) for s in cands)
        out.append((a, inter / na))
    return out


def run_cell(setup: TaskSetup, method: Method, cfg: RunConfig, world) -> list[dict]:
    """Run one method on one task; return its rows (errors included as error rows)."""
    ctx, ev = setup.ctx, setup.evaluator
    ev.faithfulness(ev.baselines["m_sae"])  # undefined faithfulness: an error row before any work
    if not any(bool(c.any()) for c in ctx.candidates.values()):
        raise MethodFailure(f"{setup.name}: no candidate nodes (every latent equals its replacement on the train split)")
    base = {"method": method.name, "method_version": method.version, "params": json.dumps(method_params(method), sort_keys=True)}
    torch.manual_seed(cfg.seed)
    with CostMeter(ctx.spliced.counter) as cost:
        out = method.discover(ctx)
    validate_output(out, ctx, method.name)
    # Evaluate on CPU-held masks (the edit moves them to the model's device).
    circuits = [Circuit({s: m.detach().cpu() for s, m in c.masks.items()}, c.params) for c in circuits_of(out, ctx, cfg.n_grid)]
    cands = {s: c.cpu() for s, c in ctx.candidates.items()}
    rows = [dict(base, metric=m, value=v) for m, v in cost.as_metrics().items()]
    results = []
    for i, c in enumerate(circuits):
        metrics = ev.evaluate(c, cands)
        results.append(metrics)
        extra = {"circuit": i, "circuit_params": json.dumps(c.params, sort_keys=True),
                 "k": c.params.get("k", metrics["size_nodes"])}
        rows += [dict(base, **extra, metric=m, value=v) for m, v in metrics.items()]
    if method.kind == "circuits" or isinstance(out, CircuitSet):
        for i, frac in nestedness(circuits, cands):
            rows.append(dict(base, circuit=i, metric="nestedness", value=frac))
    # The circuit studied in the knockout scatter and the case-study heatmap: the smallest one
    # reaching F >= 0.9, else the most faithful.
    good = [i for i, r in enumerate(results) if r["faithfulness_norm"] >= 0.9]
    chosen = min(good, key=lambda i: results[i]["size_nodes"]) if good else max(range(len(results)), key=lambda i: results[i]["faithfulness_norm"])
    for j, (fm, fc) in enumerate(ev.knockout(circuits[chosen], cfg.n_knockout, seed=cfg.seed)):
        rows.append(dict(base, circuit=chosen, sample=j, metric="knockout_model", value=fm))
        rows.append(dict(base, circuit=chosen, sample=j, metric="knockout_circuit", value=fc))
    scores = {k: v.detach().cpu() for k, v in out.values.items()} if isinstance(out, Scores) else None
    for s, m in circuits[chosen].masks.items():
        for pos, lat in (m & cands[s]).nonzero().tolist():
            val = float(scores[s][pos, lat]) if scores is not None else 1.0
            rows.append(dict(base, circuit=chosen, metric="circuit_node", site=s, pos=pos, latent=lat, value=val))
    return rows


def reference_rows(setup: TaskSetup) -> list[dict]:
    ev = setup.evaluator
    n_cand = int(sum(c.sum() for c in setup.ctx.candidates.values()))
    metrics = {**ev.baselines, "n_candidates": float(n_cand), "n_positions": float(setup.test.n_pos)}
    rows = [{"method": REFERENCE, "method_version": "", "params": "{}", "metric": m, "value": v} for m, v in metrics.items()]
    # The test split's first prompt as tokens: position labels for the case-study heatmaps.
    rows.append({"method": REFERENCE, "method_version": "", "params": "{}", "metric": "tokens",
                 "value": float("nan"), "circuit_params": json.dumps(setup.tokens)})
    return rows


def error_rows(method_name: str, exc: BaseException) -> list[dict]:
    msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
    return [{"method": method_name, "method_version": "", "params": "{}", "metric": "error", "value": math.nan,
             "status": "error", "error": msg}]


def cell_key(cfg: RunConfig, world, task_name: str, task_version: str, method: Method | str) -> str:
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("tasks", "methods", "method_options", "world_dir", "device")}
    mid = method if isinstance(method, str) else [method.name, method.version, method_params(method)]
    return _key([SCHEMA_VERSION, settings, world.fingerprint, task_name, task_version, mid])


def common_columns(cfg: RunConfig, world, task: str, task_version: str, n_train: int, n_test: int) -> dict:
    """The columns every row of one task's cells shares."""
    return {
        "schema_version": SCHEMA_VERSION, "task": task, "task_version": task_version,
        "model": world.model_name, "preset": world.preset.name, "sae_ids": ",".join(world.sae_ids),
        "error_policy": cfg.error_policy, "ablation": cfg.ablation, "split": "test", "seed": cfg.seed,
        "n_train": n_train, "n_test": n_test, "size_unit": "nodes",
    }
