"""One edge method on one task and seed: the node cell's pipeline (:mod:`bench.run.cell`) with edges
as the unit of size::

    edge universe -> discover -> validate -> cut rule on train -> circuits at sizes -> exact evaluation -> rows

* The edge universe (:mod:`bench.run.edge_universe`) is the same for every edge method of the task and
  seed; its candidate edges are what an edge method may keep.
* Sizes: the shared grid (:func:`bench.eval.sizes.size_grid`) over the candidate edges, plus every
  edge count an edge circuits-method (the edge mask) produced on the same task and seed
  (``extra_sizes``, from the runner), so rankings are compared at exactly the mask's counts.
* Evaluation is exact (:func:`bench.eval.edges.edge_logit_diff`), on the test split per prompt and
  on the evaluator's train prompts, normalised like node circuits (``F = (m(E) − m(∅)) / (m(M+SAE)
  − m(∅))``, the same baselines): keeping every candidate edge gives the universe's node circuit's F.
  Completeness: the complement (every candidate edge except the circuit's) on test.
* Rows carry ``size_unit = "edges"`` and ``k`` = the number of edges; the studied circuit
  (:func:`studied_edge_index`, chosen on train) and the headline circuits also write their edges
  (``circuit_edge`` rows) with each edge's effect inside its circuit, for the case-study graph.
"""

from __future__ import annotations

import json

import torch

from bench.api import EdgeCircuit, EdgeCircuitSet, EdgeMethodContext, EdgeScores, Method
from bench.errors import MethodFailure
from bench.eval.edges import complement_edges, edge_logit_diff, flat, restrict_edges, soft_edge_logit_diff, top_k_edges
from bench.eval.evaluate import F_FORMS, HEADLINE, Evaluator
from bench.eval.sizes import CUT_RULES
from bench.run.cell import plan_sizes
from bench.run.config import RunConfig
from bench.run.costs import CostMeter
from bench.run.edge_universe import edge_universe
from bench.run.setup import TaskSetup, method_params

# Headline edge counts: each becomes the nearest count the edge mask produced on the same task and seed.
EDGE_TARGETS = (10, 30, 100)
EFFECT_PROMPTS = 32  # train prompts the case-study edge effects are measured on


def edge_context(setup: TaskSetup, candidates: EdgeCircuit) -> EdgeMethodContext:
    c = setup.ctx
    return EdgeMethodContext(c.spliced, c.train, c.replacement, c.candidates, seed=c.seed, edge_candidates=candidates)


def validate_edges(out: object, cand: EdgeCircuit, name: str) -> None:
    """Malformed edge-method output: a reason (an error row), never a wrong number."""
    shapes = [tuple(e.shape) for e in cand.edges]
    if isinstance(out, EdgeScores):
        got = [tuple(v.shape) for v in out.values]
        if got != shapes or tuple(out.to_metric.shape) != tuple(cand.to_metric.shape):
            raise MethodFailure(f"{name}: edge scores have shapes {got} / {tuple(out.to_metric.shape)}, expected "
                                f"{shapes} / {tuple(cand.to_metric.shape)}")
        if not all(bool(torch.isfinite(v).all()) for v in [*out.values, out.to_metric]):
            raise MethodFailure(f"{name}: edge scores contain NaN or inf")
    elif isinstance(out, EdgeCircuitSet):
        if not out.circuits:
            raise MethodFailure(f"{name}: returned no edge circuits")
        for i, c in enumerate(out.circuits):
            if [tuple(e.shape) for e in c.edges] != shapes or tuple(c.to_metric.shape) != tuple(cand.to_metric.shape):
                raise MethodFailure(f"{name}: edge circuit {i} does not match the edge universe's shapes {shapes}")
    else:
        raise MethodFailure(f"{name}: an edge method returned {type(out).__name__}, expected EdgeScores or EdgeCircuitSet")


def edge_lds(ev: Evaluator, circuits: list[EdgeCircuit], split: str) -> torch.Tensor:
    """Per-prompt logit differences ``[len(circuits), n]`` of edge circuits on one of the evaluator's splits."""
    sd = ev.splits[split]
    if not circuits:
        return torch.zeros(0, len(sd.data))
    return torch.stack([edge_logit_diff(ev.spliced, sd.data, c, sd.replacement, ev.max_rows) for c in circuits])


def choose_edge_cut_rule(ev: Evaluator, out: EdgeScores | EdgeCircuitSet, cand: EdgeCircuit,
                         grid: list[int]) -> tuple[str, dict[str, float]]:
    """The cut rule of an edge ranking with the highest mean train F over the grid (ties: "abs"); as
    :func:`bench.run.cell.choose_cut_rule`, and no evaluation where the rules cannot differ."""
    if isinstance(out, EdgeCircuitSet):
        return "abs", {}
    s = torch.cat([v.detach().cpu().flatten() for v in out.values] + [out.to_metric.detach().cpu().flatten()])
    if not bool((s[flat(cand).bool()] < 0).any()):
        return "abs", {}
    area = {}
    for rule in CUT_RULES:
        lds = edge_lds(ev, [top_k_edges(out.values, out.to_metric, cand, k, rule) for k in grid], "train").mean(1)
        area[rule] = float(sum(ev.faithfulness(float(v), "train")[HEADLINE] for v in lds) / max(1, len(grid)))
    return max(CUT_RULES, key=lambda r: (area[r], r == "abs")), area


def edge_ranking(out: EdgeScores | EdgeCircuitSet) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Scores per edge slot; an edge circuits-method read as a ranking: how many of its circuits keep
    the edge (edges that survive the strongest sparsity first), as :func:`bench.eval.sizes.sweep_ranking`."""
    if isinstance(out, EdgeScores):
        return out.values, out.to_metric
    n_pairs = len(out.circuits[0].edges)
    vals = [torch.stack([c.edges[i].float().cpu() for c in out.circuits]).sum(0) for i in range(n_pairs)]
    return vals, torch.stack([c.to_metric.float().cpu() for c in out.circuits]).sum(0)


def studied_edge_index(sizes: list[int], train_f: list[float], ceiling: float) -> int:
    """The edge circuit drawn in the case study, chosen on train: the smallest reaching 90% of the
    node circuit's own train F (``ceiling``; an edge circuit cannot beat it), else the most faithful."""
    good = [i for i, f in enumerate(train_f) if f >= 0.9 * ceiling]
    if good:
        return min(good, key=lambda i: sizes[i])
    return max(range(len(train_f)), key=lambda i: train_f[i])


def edge_effects(ev: Evaluator, c: EdgeCircuit) -> torch.Tensor:
    """Each kept edge's linear effect inside ``c`` (flat slot order; 0 elsewhere): the gradient of the
    mean logit difference on the first train prompts with respect to the edge's weight at ``c``'s own
    0/1 weights, i.e. the first-order drop when that edge alone is removed from ``c``."""
    sd = ev.splits["train"]
    n = min(EFFECT_PROMPTS, len(sd.data))
    data = sd.data.subset(list(range(n)))
    w = [e.float().clone().requires_grad_(True) for e in c.edges]
    tm = c.to_metric.float().clone().requires_grad_(True)
    soft_edge_logit_diff(ev.spliced, data, c.nodes, w, tm, sd.replacement).mean().backward()
    g = torch.cat([(x.grad if x.grad is not None else torch.zeros_like(x)).flatten() for x in [*w, tm]])
    return g * flat(c).float()


def run_edge_cell(setup: TaskSetup, method: Method, cfg: RunConfig, extra_sizes: list[int] | None = None) -> list[dict]:
    """Run one edge method on one task and seed; return its rows."""
    ev = setup.evaluator
    ev.check_defined("test")
    ev.check_defined("train")
    uni = edge_universe(setup, cfg)
    cand = uni.candidates
    if cand.n_edges() == 0:
        raise MethodFailure(f"{setup.name}: the edge universe has no candidate edges")
    ctx = edge_context(setup, cand)
    base = {"method": method.name, "method_version": method.version, "size_unit": "edges",
            "params": json.dumps(method_params(method), sort_keys=True)}
    torch.manual_seed(ctx.seed)
    with CostMeter(ctx.spliced.counter, ctx.spliced.device) as cost:
        out = method.discover(ctx)
    validate_edges(out, cand, method.name)

    natives = [restrict_edges(c, cand) for c in out.circuits] if isinstance(out, EdgeCircuitSet) else []
    own = sorted({c.n_edges() for c in natives})
    sizes, grid, headline = plan_sizes(cand.n_edges(), cfg.grid_per_decade, sorted(set(extra_sizes or []) | set(own)),
                                       EDGE_TARGETS)
    rule, rule_area = choose_edge_cut_rule(ev, out, cand, grid)
    values, to_metric = edge_ranking(out)
    todo = [(c, "native") for c in natives]
    for k in sizes:
        c = top_k_edges(values, to_metric, cand, k, rule)
        c.params["grid"] = k in set(grid)
        todo.append((c, "cut"))
    circuits = [c for c, _ in todo]
    test = edge_lds(ev, circuits, "test")
    train = edge_lds(ev, circuits, "train").mean(1)
    keep = set(grid) | set(headline.values())
    comp_idx = [i for i, (c, kind) in enumerate(todo) if kind == "native" or c.n_edges() in keep]
    comp = edge_lds(ev, [complement_edges(circuits[i], cand) for i in comp_idx], "test")

    rows = [dict(base, metric=m, value=v, text=cost.memory_measure if m == "peak_memory_mb" else "")
            for m, v in cost.as_metrics().items()]
    rows += [dict(base, **r) for r in uni.rows()]
    if isinstance(out, EdgeScores):
        rows += [dict(base, metric=f"diag_{m}", value=float(v)) for m, v in out.diagnostics.items()]
    rows += [dict(base, split="train", metric="cut_rule_train_F", value=a, text=r + (" (chosen)" if r == rule else ""))
             for r, a in rule_area.items()]
    train_f = []
    for i, (c, kind) in enumerate(todo):
        common = dict(base, circuit=i, circuit_kind=kind, k=float(c.n_edges()),
                      circuit_params=json.dumps(c.params, sort_keys=True, default=float))
        forms = {"test": ev.faithfulness(float(test[i].mean()), "test"), "train": ev.faithfulness(float(train[i]), "train")}
        train_f.append(forms["train"][HEADLINE])
        rows.append(dict(common, split="test", metric="size_edges", value=float(c.n_edges())))
        rows.append(dict(common, split="test", metric="size_nodes_touched", value=float(_touched(c))))
        rows.append(dict(common, split="test", metric="logit_diff", value=float(test[i].mean()), per_prompt=test[i].tolist()))
        if i in comp_idx:
            v = comp[comp_idx.index(i)]
            rows.append(dict(common, split="test", metric="complement_logit_diff", value=float(v.mean()), per_prompt=v.tolist()))
        rows.append(dict(common, split="train", metric="logit_diff", value=float(train[i])))
        for split, fs in forms.items():
            rows += [dict(common, split=split, metric=name, value=fs[name]) for name in F_FORMS]
    sized = [c.n_edges() for c in circuits]
    chosen = studied_edge_index(sized, train_f, uni.train_F)
    rows.append(dict(base, circuit=chosen, metric="studied", value=1.0))
    want = "native" if isinstance(out, EdgeCircuitSet) else "cut"
    at = {t: next(i for i, (c, kind) in enumerate(todo) if c.n_edges() == k and kind == want)
          for t, k in headline.items() if any(c.n_edges() == k and kind == want for c, kind in todo)}
    for t, i in at.items():
        rows.append(dict(base, circuit=i, k=float(sized[i]), metric="matched_size", value=float(t)))
    for i in sorted(set(at.values()) | {chosen}):
        rows += edge_rows(base, i, circuits[i], edge_effects(ev, circuits[i]))
    return rows


def _touched(c: EdgeCircuit) -> int:
    """Nodes with at least one kept edge in or out (first-site nodes count by their out-edges)."""
    n = 0
    for i, s in enumerate(c.sites):
        used = torch.zeros(len(c.nodes[s]), dtype=torch.bool)
        if i > 0:
            used |= c.edges[i - 1].any(0)
        used |= c.edges[i].any(1) if i < len(c.edges) else c.to_metric
        n += int(used.sum())
    return n


def edge_rows(base: dict, i: int, c: EdgeCircuit, effects: torch.Tensor) -> list[dict]:
    """One ``circuit_edge`` row per kept edge: ``site``/``pos``/``latent`` the upstream node, ``text``
    the downstream end (``site|pos|latent``, or ``metric``), ``value`` its effect inside the circuit."""
    rows, off = [], 0
    for j, e in enumerate(c.edges):
        up, down = c.sites[j], c.sites[j + 1]
        for a, b in e.nonzero().tolist():
            pu, lu = c.nodes[up][a].tolist()
            pd, ld = c.nodes[down][b].tolist()
            rows.append(dict(base, circuit=i, metric="circuit_edge", site=up, pos=pu, latent=lu,
                             text=f"{down}|{pd}|{ld}", value=float(effects[off + a * e.shape[1] + b])))
        off += e.numel()
    last = c.sites[-1]
    for a in c.to_metric.nonzero().flatten().tolist():
        pu, lu = c.nodes[last][a].tolist()
        rows.append(dict(base, circuit=i, metric="circuit_edge", site=last, pos=pu, latent=lu, text="metric",
                         value=float(effects[off + a])))
    return rows
