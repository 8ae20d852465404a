"""The harness: task -> spliced model -> method -> circuits -> evaluator -> rows.

A *cell* is one (task, method, seed) under one setting (preset, error policy, ablation, sizes).
:func:`run_cell` is a short pipeline of named steps, each a function that can be tested alone::

    discover -> validate_output -> circuits_at_sizes -> evaluate_circuits -> derived metrics -> rows

Matched sizes by construction: a cell evaluates its method at the shared grid of sizes plus every
size that a circuits-method (the learned mask) produced on the same task and seed (``extra_sizes``,
supplied by the runner, which runs circuits-methods first). A seed changes the data draw, the
train/test split and each method's randomness.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from bench import SCHEMA_VERSION
from bench.ablation import ABLATIONS, candidates, make_replacement
from bench.api import Circuit, CircuitSet, Method, MethodContext, Scores
from bench.costs import CostMeter
from bench.data import TaskData, split_train_test, tokenize_records
from bench.errors import MethodFailure, UsageError, did_you_mean
from bench.evaluate import F_FORMS, HEADLINE, Evaluator, SplitData
from bench.sizes import n_nodes, nearest_sizes, restrict, size_grid, sweep_ranking, top_k_circuit, union
from bench.spliced import ERROR_POLICIES

log = logging.getLogger(__name__)

DEFAULT_TASKS = ("dict_keyerror", "list_indexerror", "sva", "ioi")
DEFAULT_METHODS = ("binary_mask", "attribution_patching", "integrated_gradients", "activation_patching",
                   "activation_magnitude", "random")
REFERENCE = "(reference)"
# Target sizes of the headline comparison: each becomes the nearest size the mask produced on the
# same task and seed (or the nearest grid size when no circuits-method ran), so every method is
# compared at exactly the same number of nodes.
HEADLINE_TARGETS = (10, 30, 100, 300)


@dataclass(frozen=True)
class RunConfig:
    """One benchmark setting; every field is recorded with the results."""

    preset: str = "embedded"
    tasks: tuple[str, ...] = DEFAULT_TASKS
    methods: tuple[str, ...] = DEFAULT_METHODS
    error_policy: str = "drop"
    ablation: str = "mean"
    seeds: tuple[int, ...] = (0, 1, 2)
    n_train: int = 128
    n_test: int = 128
    # Tasks that need more train prompts than n_train so that no method overfits by default
    # (task name -> n; filled from a task's own ``n_train`` unless --n-train is given).
    task_n_train: dict = field(default_factory=dict)
    grid_per_decade: int = 5
    n_knockout: int = 4
    n_knockout_prompts: int = 64  # knockout (a secondary view) runs on this many test prompts
    n_train_eval: int = 64  # train prompts the evaluator scores circuits on (train F); methods see all n_train
    headline_targets: tuple[int, ...] = HEADLINE_TARGETS
    quick: bool = False
    method_options: dict = field(default_factory=dict)
    world_dir: str | None = None
    device: str = "cpu"
    max_rows: int = 1024
    sites: tuple[str, ...] = ()  # SAE placement: the preset's SAEs to splice (empty: all of them)
    answers: str = "task"  # task | oriented | shuffled: the answer controls of bench.controls

    def train_size(self, task_name: str) -> int:
        """Train prompts for ``task_name``: its own default where it has one, else ``n_train``."""
        return int(self.task_n_train.get(task_name, self.n_train))

    def __post_init__(self) -> None:
        if self.error_policy not in ERROR_POLICIES:
            raise UsageError(did_you_mean(self.error_policy, ERROR_POLICIES, "error policy"))
        if self.ablation not in ABLATIONS:
            raise UsageError(did_you_mean(self.ablation, ABLATIONS, "ablation"))
        if self.n_train < 2 or self.n_test < 2:
            raise UsageError("--n-train and --n-test must be at least 2")
        if not self.tasks or not self.methods:
            raise UsageError("at least one task and one method are needed")
        if not self.seeds:
            raise UsageError("--seeds needs at least one seed")
        if self.max_rows < 1:
            raise UsageError("--max-rows must be at least 1")
        from bench.controls import check_answers

        check_answers(self.answers)


@dataclass
class TaskSetup:
    """Everything about one task and seed that every method shares."""

    name: str
    version: str
    seed: int
    train: TaskData
    test: TaskData
    ctx: MethodContext
    evaluator: Evaluator
    universe: dict[str, torch.Tensor]
    position_labels: list[str]

    @property
    def n_universe(self) -> int:
        return n_nodes(self.universe)


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


def load_task(name: str):
    from bench import registry
    from tasks.base import FileTask, Task

    if name.endswith((".json", ".jsonl")):
        return FileTask(name)
    cls = registry.load("task", name)
    task = cls() if isinstance(cls, type) else cls
    if not isinstance(task, Task):
        raise UsageError(f"task {name!r} does not implement tasks.base.Task")
    return task


def position_labels(data: TaskData, tokenizer) -> list[str]:
    """A label per position, from every prompt of ``data`` rather than one example.

    A position whose token is the same in every prompt is labelled with that token. Otherwise the
    label says which answer the token is, when it is one (IOI's names: "IO" is the clean answer,
    "S" the patch answer), with the share of prompts, e.g. ``[IO 50% / S 50%]``; else ``[varies]``.
    """
    labels = []
    for p in range(data.n_pos):
        col = data.clean[:, p]
        if bool((col == col[0]).all()):
            labels.append(tokenizer.convert_ids_to_tokens([int(col[0])])[0])
            continue
        io = float((col == data.clean_answer).float().mean())
        s = float((col == data.patch_answer).float().mean())
        parts = [f"{name} {share:.0%}" for name, share in (("IO", io), ("S", s)) if share > 0]
        example = tokenizer.convert_ids_to_tokens([int(col[0])])[0]
        labels.append(f"[{' / '.join(parts)}]" if parts else f"[varies: {example}…]")
    return labels


def task_splits(task, world, cfg: RunConfig, seed: int) -> tuple[TaskData, TaskData]:
    """The task's records for ``seed``, tokenized and split into train (the task's own size, see
    :meth:`RunConfig.train_size`) and test."""
    n_train = cfg.train_size(task.name)
    records = task.records(2 * (n_train + cfg.n_test), seed=seed)
    data = tokenize_records(records, world.tokenizer, task.name, task.version, source=str(getattr(task, "path", task.name)))
    return split_train_test(data, n_train, cfg.n_test, seed)


def setup_task(task, world, cfg: RunConfig, seed: int) -> TaskSetup:
    """Tokenize, split, fit the ablation, the candidates and the universe, build the evaluator."""
    spliced = world.spliced
    # Generate enough records for both splits; pairs come in groups of up to 2.
    train, test = task_splits(task, world, cfg, seed)
    if cfg.error_policy == "mean":
        # this setup's own view of the model (weights and pass counter shared): the cached world
        # serves every task and seed, and each fits its own per-position error means
        spliced = spliced.with_policy("mean")
        spliced.fit_error_means(train.patch)
    repl_train = make_replacement(cfg.ablation, spliced, train, train)
    repl_test = make_replacement(cfg.ablation, spliced, test, train)
    if cfg.answers != "task":  # a control (bench.controls): answers shuffled and/or oriented per split
        from bench.controls import apply_answers

        train = apply_answers(cfg.answers, train, spliced, seed, repl_train, cfg.max_rows)
        test = apply_answers(cfg.answers, test, spliced, seed, repl_test, cfg.max_rows)
    train_cands = {s: c.cpu() for s, c in candidates(spliced.latents(train.clean), repl_train).items()}
    test_cands = {s: c.cpu() for s, c in candidates(spliced.latents(test.clean), repl_test).items()}
    universe = union(train_cands, test_cands)
    ctx = MethodContext(spliced, train, repl_train, {s: c.to(spliced.device) for s, c in train_cands.items()}, seed=seed)
    # Train F is measured on the first n_train_eval train prompts (a fixed subset, for cost); the
    # replacement there is the same train mean (or, for counterfactual, those prompts' own rows).
    train_eval = train.subset(list(range(min(cfg.n_train_eval, len(train)))), "train")
    repl_train_eval = make_replacement(cfg.ablation, spliced, train_eval, train)
    evaluator = Evaluator(spliced, {"train": SplitData(train_eval, repl_train_eval), "test": SplitData(test, repl_test)},
                          universe, max_rows=cfg.max_rows)
    return TaskSetup(task.name, task.version, seed, train, test, ctx, evaluator, universe,
                     position_labels(test, world.tokenizer))


# ----- the cell's steps ---------------------------------------------------------------------------

def discover(method: Method, ctx: MethodContext) -> tuple[Scores | CircuitSet, CostMeter]:
    """Step 1: the method's own work on the train split, with its cost."""
    torch.manual_seed(ctx.seed)
    # The context is shared by every method of a task and seed: each method pays for its own cached
    # train prefix (MethodContext.train_prefix), whichever ran first.
    ctx.clear_cache()
    with CostMeter(ctx.spliced.counter, ctx.spliced.device) as cost:
        out = method.discover(ctx)
    return out, cost


def validate_output(out: object, ctx: MethodContext, method_name: str) -> None:
    """Step 2: reject malformed method output with a reason (becomes an error row)."""
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


def native_sizes(out: Scores | CircuitSet, universe: dict[str, torch.Tensor]) -> list[int]:
    """The sizes (universe nodes) of the circuits a circuits-method built itself."""
    if not isinstance(out, CircuitSet):
        return []
    return sorted({n_nodes(restrict(c, universe).masks) for c in out.circuits})


def circuits_at_sizes(out: Scores | CircuitSet, universe: dict[str, torch.Tensor],
                      sizes: list[int], grid: list[int] | None = None) -> list[tuple[Circuit, str]]:
    """Step 3: the circuits to evaluate, each with its kind.

    ``native``: a circuit the method built (restricted to the universe); ``cut``: the method's
    ranking cut at one of ``sizes`` (a circuits-method is read as a ranking by :func:`sweep_ranking`).
    """
    out_list: list[tuple[Circuit, str]] = []
    if isinstance(out, CircuitSet):
        out_list += [(restrict(c, universe), "native") for c in out.circuits]
        ranking = sweep_ranking(out.circuits, list(universe))
    else:
        ranking = out.values
    grid_set = set(grid or [])
    for k in sizes:
        c = top_k_circuit(ranking, universe, k)
        c.params["grid"] = k in grid_set  # a shared-grid size (area scores use these only)
        out_list.append((c, "cut"))
    return out_list


@dataclass
class Evaluated:
    """Step 4's output for one circuit."""

    circuit: Circuit
    kind: str
    size_nodes: int
    size_latents: int
    test_ld: torch.Tensor  # [n_test]
    complement_ld: torch.Tensor  # [n_test]
    train_ld_mean: float
    forms: dict[str, dict[str, float]]  # split -> F forms


def evaluate_circuits(ev: Evaluator, circuits: list[tuple[Circuit, str]],
                      complement: list[bool] | None = None) -> list[Evaluated]:
    """Step 4: every circuit on test (per prompt) and train (means); its complement on test where
    ``complement`` says so (default: every circuit; NaN elsewhere)."""
    masks = [c.masks for c, _ in circuits]
    test = ev.lds(masks, "test")
    want = [True] * len(circuits) if complement is None else complement
    comp = torch.full_like(test, float("nan"))
    idx = [i for i, w in enumerate(want) if w]
    if idx:
        comp[idx] = ev.lds([ev.complement(circuits[i][0]) for i in idx], "test")
    train = ev.lds(masks, "train").mean(1)
    out = []
    for i, (c, kind) in enumerate(circuits):
        forms = {"test": ev.faithfulness(float(test[i].mean()), "test"),
                 "train": ev.faithfulness(float(train[i]), "train")}
        out.append(Evaluated(c, kind, c.n_nodes(), len(c.latent_sets()), test[i], comp[i], float(train[i]), forms))
    return out


def nestedness(circuits: list[Circuit]) -> list[dict]:
    """Nestedness of a sweep: node-level against the next larger circuit, latent-level against all larger.

    The paper's number is latent-level: the fraction of a smaller circuit's latents contained in
    each larger one (≥ 0.99 there); ``nestedness_latent_min`` is its minimum over the larger ones.
    """
    sized = sorted(range(len(circuits)), key=lambda i: circuits[i].n_nodes())
    rows = []
    for j, a in enumerate(sized):
        na = circuits[a].n_nodes()
        if na == 0 or j + 1 == len(sized):
            continue
        b = sized[j + 1]
        inter = sum(int((circuits[a].masks[s] & circuits[b].masks[s]).sum()) for s in circuits[a].masks)
        rows.append({"circuit": a, "metric": "nestedness_node_next", "value": inter / na})
        la = circuits[a].latent_sets()
        fracs = [len(la & circuits[c].latent_sets()) / len(la) for c in sized[j + 1:]]
        rows.append({"circuit": a, "metric": "nestedness_latent_min", "value": min(fracs)})
        rows.append({"circuit": a, "metric": "nestedness_latent_mean", "value": float(np.mean(fracs))})
    return rows


def studied_index(evals: list[Evaluated]) -> int:
    """The circuit shown in the case study and knockout plot, chosen on *train*, never on test:
    the smallest with train F ≥ 0.9, else the most faithful on train."""
    good = [i for i, e in enumerate(evals) if e.forms["train"][HEADLINE] >= 0.9]
    if good:
        return min(good, key=lambda i: (evals[i].size_nodes, evals[i].kind != "native"))
    return max(range(len(evals)), key=lambda i: evals[i].forms["train"][HEADLINE])


def headline_indices(evals: list[Evaluated], headline: dict[int, int], native: bool) -> dict[int, int]:
    """target -> index of the circuit evaluated at that target's matched size (a mask's own circuit)."""
    want = "native" if native else "cut"
    out = {}
    for t, k in headline.items():
        hits = [i for i, e in enumerate(evals) if e.size_nodes == k and e.kind == want]
        if hits:
            out[t] = hits[0]
    return out


def plan_sizes(n_universe: int, per_decade: int, extra_sizes: list[int],
               targets: tuple[int, ...]) -> tuple[list[int], list[int], dict[int, int]]:
    """(sizes every method is cut at, the shared grid, {headline target: matched size}) for one task and seed."""
    grid = size_grid(n_universe, per_decade)
    extra = sorted({k for k in extra_sizes if 0 < k <= n_universe})
    sizes = sorted(set(grid) | set(extra))
    headline = nearest_sizes(targets, extra if extra else grid)
    return sizes, grid, headline


def run_cell(setup: TaskSetup, method: Method, cfg: RunConfig, extra_sizes: list[int] | None = None) -> list[dict]:
    """Run one method on one task and seed; return its rows (the steps above, in order)."""
    ev, ctx = setup.evaluator, setup.ctx
    ev.check_defined("test")  # undefined faithfulness: an error row before any work
    ev.check_defined("train")
    if not any(bool(c.any()) for c in ctx.candidates.values()):
        raise MethodFailure(f"{setup.name}: no candidate nodes (every latent equals its replacement on the train split)")
    base = {"method": method.name, "method_version": method.version, "params": json.dumps(method_params(method), sort_keys=True)}

    out, cost = discover(method, ctx)
    validate_output(out, ctx, method.name)
    own = native_sizes(out, setup.universe)
    sizes, grid, headline = plan_sizes(setup.n_universe, cfg.grid_per_decade, sorted(set(extra_sizes or []) | set(own)),
                                       cfg.headline_targets)
    todo = circuits_at_sizes(out, setup.universe, sizes, grid)
    # The complement (completeness) is measured where the report and figures use it: the shared
    # grid, the matched headline sizes and a circuits-method's own circuits.
    keep = set(grid) | set(headline.values())
    evals = evaluate_circuits(ev, todo, [k == "native" or c.n_nodes() in keep for c, k in todo])

    rows = [dict(base, metric=m, value=v, text=cost.memory_measure if m == "peak_memory_mb" else "")
            for m, v in cost.as_metrics().items()]
    if isinstance(out, Scores):
        rows += [dict(base, metric=f"diag_{m}", value=float(v)) for m, v in out.diagnostics.items()]
    rows += [dict(base, **r) for r in circuit_rows(evals, list(setup.universe))]
    natives = [i for i, e in enumerate(evals) if e.kind == "native"]
    for r in nestedness([evals[i].circuit for i in natives]):
        rows.append(dict(base, **{**r, "circuit": natives[r["circuit"]]}))

    chosen = studied_index(evals)
    rows.append(dict(base, circuit=chosen, metric="studied", value=1.0))
    at = headline_indices(evals, headline, native=isinstance(out, CircuitSet))
    for t, i in at.items():
        rows.append(dict(base, circuit=i, k=float(evals[i].size_nodes), metric="matched_size", value=float(t)))
    scores = {k: v.detach().cpu() for k, v in out.values.items()} if isinstance(out, Scores) else None
    for i in sorted(set(at.values()) | {chosen}):
        for j, (fm, fc) in enumerate(ev.knockout(evals[i].circuit, cfg.n_knockout, seed=setup.seed * 7919 + i,
                                               n_prompts=cfg.n_knockout_prompts)):
            rows.append(dict(base, circuit=i, sample=j, metric="knockout_model", value=fm))
            rows.append(dict(base, circuit=i, sample=j, metric="knockout_circuit", value=fc))
        rows += node_rows(base, i, evals[i].circuit, scores)
    for i in natives:
        rows += trace_rows(base, i, evals[i].circuit.trace)
    return rows


def circuit_rows(evals: list[Evaluated], sites: list[str]) -> list[dict]:
    """Step 5: one row per (circuit, split, metric); test logit differences carry per-prompt values."""
    rows = []
    for i, e in enumerate(evals):
        common = {"circuit": i, "circuit_kind": e.kind, "k": float(e.size_nodes),
                  "circuit_params": json.dumps(e.circuit.params, sort_keys=True, default=float)}
        rows.append(dict(common, split="test", metric="size_nodes", value=float(e.size_nodes)))
        rows.append(dict(common, split="test", metric="size_latents", value=float(e.size_latents)))
        for s in sites:
            m = e.circuit.masks[s]
            rows.append(dict(common, split="test", site=s, metric="site_nodes", value=float(m.sum())))
            rows.append(dict(common, split="test", site=s, metric="site_latents", value=float(m.any(0).sum())))
        rows.append(dict(common, split="test", metric="logit_diff", value=float(e.test_ld.mean()),
                         per_prompt=e.test_ld.tolist()))
        if not torch.isnan(e.complement_ld).any():
            rows.append(dict(common, split="test", metric="complement_logit_diff", value=float(e.complement_ld.mean()),
                             per_prompt=e.complement_ld.tolist()))
        rows.append(dict(common, split="train", metric="logit_diff", value=e.train_ld_mean))
        for split, forms in e.forms.items():
            for name in F_FORMS:
                rows.append(dict(common, split=split, metric=name, value=forms[name]))
    return rows


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


def code_version() -> str:
    """A hash of the suite's evaluation code: harness, evaluator, sizes, masked runs, ablation,
    data, the spliced model and the answer controls. Cached cells key on it, so an improved evaluator never reuses old cells."""
    import bench

    root = __import__("pathlib").Path(bench.__file__).parent
    h = hashlib.sha256()
    for name in ("harness.py", "evaluate.py", "sizes.py", "masked.py", "ablation.py", "data.py", "spliced.py", "api.py",
                 "controls.py"):
        p = root / name
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


def cell_key(cfg: RunConfig, world, task_name: str, task_version: str, seed: int, method: Method | str,
             extra_sizes: list[int] | None = None) -> str:
    skip = ("tasks", "methods", "method_options", "world_dir", "device", "seeds", "max_rows")
    settings = {k: v for k, v in asdict(cfg).items() if k not in skip}
    mid = method if isinstance(method, str) else [method.name, method.version, method_params(method)]
    return _key([SCHEMA_VERSION, code_version(), settings, world.fingerprint, task_name, task_version, seed, mid,
                 sorted(extra_sizes or [])])


def common_columns(cfg: RunConfig, world, task: str, task_version: str, seed: int, n_train: int, n_test: int) -> dict:
    """The columns every row of one task's cells shares."""
    return {
        "schema_version": SCHEMA_VERSION, "task": task, "task_version": task_version,
        "model": world.model_name, "preset": world.preset.name,
        "sae_ids": ",".join(cfg.sites) if cfg.sites else ",".join(world.sae_ids),
        "error_policy": cfg.error_policy, "ablation": cfg.ablation, "split": "", "seed": seed,
        "n_train": n_train, "n_test": n_test, "size_unit": "nodes", "code_version": code_version(),
    }
