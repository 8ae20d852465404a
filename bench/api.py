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
    gradient_based: ClassVar[bool] = False  # True: must equal exact patching on an affine metric
    # Contract checks this method is expected to fail, each with its reason (see bench.testing).
    contract_expected_failures: ClassVar[dict[str, str]] = {}
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    quick_overrides: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: MethodConfig | None = None, **overrides: Any):
        base = config if config is not None else self.Config()
        self.config = dataclasses.replace(base, **overrides) if overrides else base

    @abstractmethod
    def discover(self, ctx: MethodContext) -> Scores | CircuitSet:
        """Find the circuit(s) on ``ctx.train``; see the module docstring for what to return."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.to_json()})"
