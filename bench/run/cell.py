"""The harness: task -> spliced model -> method -> circuits -> evaluator -> rows.

A *cell* is one (task, method, seed) under one setting (preset, error policy, ablation, sizes).
:func:`run_cell` is a short pipeline of named steps, each a function that can be tested alone::

    discover -> validate_output -> choose_cut_rule -> circuits_at_sizes -> evaluate_circuits -> derived metrics -> rows

Matched sizes by construction: a cell evaluates its method at the shared grid of sizes plus every
size that a circuits-method (the learned mask) produced on the same task and seed (``extra_sizes``,
supplied by the runner, which runs circuits-methods first). A seed changes the data draw, the
train/test split and each method's randomness.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from bench.api import Circuit, CircuitSet, Method, MethodContext, Scores
from bench.errors import MethodFailure
from bench.eval.evaluate import F_FORMS, HEADLINE, Evaluator
from bench.eval.sizes import CUT_RULES, n_nodes, nearest_sizes, restrict, size_grid, sweep_ranking, top_k_circuit
from bench.run.config import RunConfig
from bench.run.costs import CostMeter
from bench.run.rows import node_rows, trace_rows
from bench.run.setup import TaskSetup, method_params


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


def choose_cut_rule(ev: Evaluator, out: Scores | CircuitSet, universe: dict[str, torch.Tensor],
                    grid: list[int]) -> tuple[str, dict[str, float]]:
    """Step 3a: the cut rule of a ranking, chosen on the *train* split: the rule of
    :data:`~bench.eval.sizes.CUT_RULES` whose cuts at the shared grid have the highest mean train F
    (ties: "abs"). Returns (rule, {rule: mean train F}); no evaluation where the rules cannot differ
    (a circuits-method read as a ranking, or no universe node with a negative score)."""
    if isinstance(out, CircuitSet) or not any(bool((v.detach().cpu()[universe[s]] < 0).any()) for s, v in out.values.items()):
        return "abs", {}
    masks = [top_k_circuit(out.values, universe, k, rule).masks for rule in CUT_RULES for k in grid]
    lds = ev.lds(masks, "train").mean(1).view(len(CUT_RULES), len(grid))
    area = {rule: float(np.mean([ev.faithfulness(float(v), "train")[HEADLINE] for v in lds[i]]))
            for i, rule in enumerate(CUT_RULES)}
    best = max(CUT_RULES, key=lambda r: (area[r], r == "abs"))
    return best, area


def circuits_at_sizes(out: Scores | CircuitSet, universe: dict[str, torch.Tensor],
                      sizes: list[int], grid: list[int] | None = None, rule: str = "abs") -> list[tuple[Circuit, str]]:
    """Step 3: the circuits to evaluate, each with its kind.

    ``native``: a circuit the method built (restricted to the universe); ``cut``: the method's
    ranking cut by ``rule`` at one of ``sizes`` (a circuits-method is read as a ranking by
    :func:`sweep_ranking`).
    """
    out_list: list[tuple[Circuit, str]] = []
    if isinstance(out, CircuitSet):
        out_list += [(restrict(c, universe), "native") for c in out.circuits]
        ranking = sweep_ranking(out.circuits, list(universe))
    else:
        ranking = out.values
    grid_set = set(grid or [])
    for k in sizes:
        c = top_k_circuit(ranking, universe, k, rule)
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
    rule, rule_area = choose_cut_rule(ev, out, setup.universe, grid)
    todo = circuits_at_sizes(out, setup.universe, sizes, grid, rule)
    # The complement (completeness) is measured where the report and figures use it: the shared
    # grid, the matched headline sizes and a circuits-method's own circuits.
    keep = set(grid) | set(headline.values())
    evals = evaluate_circuits(ev, todo, [k == "native" or c.n_nodes() in keep for c, k in todo])

    rows = [dict(base, metric=m, value=v, text=cost.memory_measure if m == "peak_memory_mb" else "")
            for m, v in cost.as_metrics().items()]
    if isinstance(out, Scores):
        rows += [dict(base, metric=f"diag_{m}", value=float(v)) for m, v in out.diagnostics.items()]
    rows += [dict(base, split="train", metric="cut_rule_train_F", value=a, text=r + (" (chosen)" if r == rule else ""))
             for r, a in rule_area.items()]
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
