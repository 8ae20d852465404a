"""The one method interface.

A method sees a :class:`MethodContext` (the spliced model, the task's *train* split, the
replacement latents of the benchmark's ablation, the candidate nodes, a seed) and returns either

* :class:`Scores`: one number per node ``(site, position, latent)``, the estimated drop of the
  task metric when that node alone is ablated (positive = the node supports the clean answer);
  the harness cuts circuits from them at a shared grid of sizes; or
* :class:`CircuitSet`: circuits it built itself (e.g. learned masks), each with its parameters.

Methods never evaluate themselves and never see the test split: the harness does both, the same
way for everyone.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from bench.data import TaskData, logit_diff
from bench.model.ablation import Replacement
from bench.model.spliced import Prefix, SplicedModel


@dataclass
class MethodContext:
    """What a method may use. ``replacement`` is aligned with ``train`` when per prompt."""

    spliced: SplicedModel
    train: TaskData
    replacement: Replacement
    candidates: dict[str, torch.Tensor]
    seed: int = 0
    _train_prefix: Prefix | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def sites(self) -> list[str]:
        return self.spliced.sites

    def clear_cache(self) -> None:
        """Forget what :meth:`train_prefix` cached (the harness calls it before each method, so
        every method pays for its own prefix)."""
        self._train_prefix = None

    def train_prefix(self, batch_size: int = 256) -> Prefix | None:
        """The train prompts' residual entering the first site, computed once per context.

        Nothing a method edits acts below the first site, so a method that runs the same train
        prompts many times (the mask's steps, IG's interpolation) can start there:
        ``ctx.spliced.run(ctx.train_prefix().index(idx), edits)``. None when the sites do not
        allow it (then run from tokens). Costs ``n_train x pos x d_model`` floats of memory.
        """
        if self._train_prefix is None:
            parts = [self.spliced.prefix(b.clean) for _, b in self.train.batches(batch_size)]
            if parts and parts[0] is not None:
                self._train_prefix = Prefix(torch.cat([p.resid for p in parts]))
        return self._train_prefix

    def metric(self, logits: torch.Tensor, data: TaskData) -> torch.Tensor:
        """Per-prompt logit difference ``[n]``."""
        return logit_diff(logits, data.clean_answer, data.patch_answer)

    def masked_metric(self, masks: dict[str, torch.Tensor], data: TaskData, start: int = 0) -> torch.Tensor:
        """Per-prompt metric with ``f' = r + m (f - r)`` at every site in ``masks``.

        ``data`` is a slice of the train split beginning at prompt ``start`` (for per-prompt
        replacements). Gradients flow to the masks.
        """
        from bench.model.masked import masked_logit_diff

        return masked_logit_diff(self.spliced, data, masks, self.replacement, start)


@dataclass
class Scores:
    """Per-node scores: ``values[site]`` is ``[pos, d_sae]``."""

    values: dict[str, torch.Tensor]
    # Optional numbers about the scores themselves (e.g. exact patching's split-half reliability);
    # the harness stores them as ``diag_<name>`` rows.
    diagnostics: dict[str, float] = field(default_factory=dict)


@dataclass
class Circuit:
    """A set of nodes: ``masks[site]`` is a bool ``[pos, d_sae]`` (True = in the circuit)."""

    masks: dict[str, torch.Tensor]
    params: dict[str, Any] = field(default_factory=dict)
    # Optional: a continuous score per node ``[pos, d_sae]`` behind the circuit (e.g. a learned
    # mask's logits); the harness may use it to read a circuits-method as a ranking.
    scores: dict[str, torch.Tensor] | None = None
    # Optional: training diagnostics, metric name -> one value per logged step (``"step"`` gives
    # the step numbers). The harness stores them as ``trace_<name>`` rows.
    trace: dict[str, list[float]] = field(default_factory=dict)

    def n_nodes(self, candidates: dict[str, torch.Tensor] | None = None) -> int:
        return int(sum((m & candidates[s] if candidates else m).sum() for s, m in self.masks.items()))

    def latent_sets(self, candidates: dict[str, torch.Tensor] | None = None) -> set[tuple[str, int]]:
        out = set()
        for s, m in self.masks.items():
            mm = m & candidates[s] if candidates else m
            out |= {(s, int(j)) for j in mm.any(0).nonzero().flatten().tolist()}
        return out


@dataclass
class CircuitSet:
    """Circuits a method built directly, e.g. one per sparsity coefficient."""

    circuits: list[Circuit]


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method's configuration: frozen, JSON round-trippable."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown option(s) {sorted(unknown)}; known: {sorted(names)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


class Method(ABC):
    """Base class for methods. Subclasses set ``name``, ``version``, ``Config`` and ``discover``.

    Bump ``version`` whenever results would change: cached cells are keyed on it.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    kind: ClassVar[str] = "scores"  # or "circuits"
    # What a circuit is made of: "nodes" (latents at positions) or "edges" (between the nodes of the
    # run's edge universe; the method gets an EdgeMethodContext and returns EdgeScores or EdgeCircuitSet).
    unit: ClassVar[str] = "nodes"
    gradient_based: ClassVar[bool] = False  # True: must equal exact patching on an affine metric
    # Contract checks this method is expected to fail, each with its reason (see bench.testing).
    contract_expected_failures: ClassVar[dict[str, str]] = {}
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    quick_overrides: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: MethodConfig | None = None, **overrides: Any):
        base = config if config is not None else self.Config()
        self.config = dataclasses.replace(base, **overrides) if overrides else base

    @abstractmethod
    def discover(self, ctx: MethodContext) -> Scores | CircuitSet | EdgeScores | EdgeCircuitSet:
        """Find the circuit(s) on ``ctx.train``; see the module docstring for what to return."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.to_json()})"


# ----- edges between latents ----------------------------------------------------------------------
# An edge method (``unit = "edges"``) works inside a node circuit that the harness chose the same way
# for every edge method of a task and seed (the *edge universe*, :mod:`bench.run.edge_universe`):
# its nodes per site (``[n, 2]``: position, latent) and every candidate edge between them
# (:class:`EdgeCircuit`; what an edge circuit computes: the docstring of :mod:`bench.eval.edges`).


@dataclass
class EdgeCircuit:
    """Nodes per site (``[n, 2]`` long: position, latent) and the kept edges between them.

    ``edges[i]`` is a bool ``[n_nodes(site i), n_nodes(site i+1)]`` matrix for consecutive sites,
    ``to_metric`` a bool ``[n_nodes(last site)]``. ``candidates()`` is the full set allowed by
    position (``pos_u <= pos_d``)."""

    sites: list[str]
    nodes: dict[str, torch.Tensor]
    edges: list[torch.Tensor]
    to_metric: torch.Tensor
    params: dict = field(default_factory=dict)

    @classmethod
    def from_masks(cls, masks: dict[str, torch.Tensor], sites: list[str], keep_all: bool = True) -> EdgeCircuit:
        """The edge circuit over a node circuit's nodes (bool ``[pos, d_sae]`` per site): every
        candidate edge kept (``keep_all``) or none."""
        nodes = {s: masks[s].nonzero().long().cpu() for s in sites}
        edges = [candidate_edges(nodes[a], nodes[b]) & keep_all for a, b in zip(sites, sites[1:])]
        return cls(list(sites), nodes, edges, torch.full((len(nodes[sites[-1]]),), keep_all, dtype=torch.bool))

    def n_edges(self) -> int:
        return int(sum(int(e.sum()) for e in self.edges) + int(self.to_metric.sum()))

    def candidates(self) -> EdgeCircuit:
        return EdgeCircuit(self.sites, self.nodes,
                           [candidate_edges(self.nodes[a], self.nodes[b]) for a, b in zip(self.sites, self.sites[1:])],
                           torch.ones_like(self.to_metric), dict(self.params))


def candidate_edges(up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """``[len(up), len(down)]``: True where the upstream node's position is <= the downstream one's."""
    return up[:, 0].view(-1, 1) <= down[:, 0].view(1, -1)




@dataclass
class EdgeMethodContext(MethodContext):
    """A :class:`MethodContext` plus the edge universe: ``edge_candidates`` holds its nodes and every
    candidate edge (``edges[i]``: site ``i`` to site ``i + 1``; ``to_metric``: last site to the metric).
    A method runs edge circuits with float weights through
    :func:`bench.eval.edges.soft_edge_logit_diff` (differentiable; the exact semantics at 0/1)."""

    edge_candidates: EdgeCircuit | None = None


@dataclass
class EdgeScores:
    """One score per candidate edge: ``values[i]`` is ``[n_nodes(site i), n_nodes(site i+1)]``,
    ``to_metric`` is ``[n_nodes(last site)]`` (positive = the edge supports the clean answer).
    Entries that are not candidate edges are ignored."""

    values: list[torch.Tensor]
    to_metric: torch.Tensor
    diagnostics: dict[str, float] = field(default_factory=dict)


@dataclass
class EdgeCircuitSet:
    """Edge circuits a method built itself (e.g. one learned edge mask per lambda)."""

    circuits: list[EdgeCircuit]
