"""The run's settings (:class:`RunConfig`) and their defaults: one place for every default a run uses.

Every field is recorded in ``run.json`` with the results. The CLI and the Python API build a
``RunConfig`` from their own inputs; everything downstream reads only this object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import InputError, UsageError, did_you_mean
from bench.model.ablation import ABLATIONS
from bench.model.spliced import ERROR_POLICIES

DEFAULT_TASKS = ("dict_keyerror", "list_indexerror", "sva", "ioi")
DEFAULT_METHODS = ("binary_mask", "attribution_patching", "integrated_gradients", "activation_patching",
                   "activation_magnitude", "random", "greedy")
# A --quick first look runs the contestants only: the two references (bench.eval.verdict.REFERENCES:
# exact patching, on 3 prompts in a quick run, and the greedy best-circuit yardstick) stay out of the
# tally anyway and were 41% of the quick run's cell time (62.4 of 153.3 s at 76aedc5); --methods adds them.
QUICK_METHODS = ("binary_mask", "attribution_patching", "integrated_gradients", "activation_magnitude", "random")


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
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # seed-level intervals need seeds (bench.eval.stats)
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
    answers: str = "task"  # task | oriented | shuffled: the answer controls of bench.run.controls
    dtype: str | None = None  # the model's and SAEs' dtype (None: the preset's own on the device)
    # The edge universe (bench.run.edge_universe): the node circuit every edge method connects, cut
    # from this node method's ranking on train, at most edge_max_nodes nodes.
    edge_node_method: str = "integrated_gradients"
    edge_max_nodes: int = 48

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
        if self.edge_max_nodes < 2:
            raise UsageError("--edge-max-nodes must be at least 2 (an edge needs two nodes)")
        if self.dtype is not None and self.dtype not in ("float32", "float16", "bfloat16"):
            raise UsageError(did_you_mean(self.dtype, ("float32", "float16", "bfloat16"), "dtype"))
        from bench.run.controls import check_answers

        check_answers(self.answers)

# A --quick first look: one seed, 64 prompts, a coarser grid, train F and knockout on 32 prompts,
# no references (QUICK_METHODS).
# A full run uses RunConfig's own defaults for the same fields (FULL).
QUICK = {"seeds": (0,), "n_train": 64, "n_test": 64, "grid_per_decade": 3, "n_knockout": 4, "n_train_eval": 32,
         "n_knockout_prompts": 32, "methods": QUICK_METHODS}
FULL = {k: RunConfig.__dataclass_fields__[k].default for k in QUICK}


def run_defaults(quick: bool) -> dict:
    """The defaults of a full run or of a --quick one (a copy)."""
    return dict(QUICK if quick else FULL)


def make_config(quick: bool = False, device: str = "cpu", **given) -> RunConfig:
    """A RunConfig from what a user gave (``None``: not given), the rest from a full run's or a quick
    one's defaults and the device's ``max_rows``: the one mapping the CLI and the Python API share."""
    fields = {**run_defaults(quick), "max_rows": default_max_rows(device)}
    fields.update({k: v for k, v in given.items() if v is not None})
    return RunConfig(quick=quick, device=device, **fields)


# Task setups a process keeps (the default run has 12 task x seed groups); the memory budget
# counts this many setups' resident state.
MAX_SETUPS = 16


def parse_method_options(items: list[str]) -> dict[str, dict]:
    """``METHOD.KEY=VALUE`` items (JSON values, else the raw string) -> {method: {key: value}}."""
    out: dict[str, dict] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        method, dot, opt = key.partition(".")
        if not eq or not dot or not opt:
            raise UsageError(f"--option {item!r}: expected METHOD.KEY=VALUE, e.g. binary_mask.steps=100")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(method, {})[opt] = value
    return out


def default_max_rows(device: str) -> int:
    """Rows per evaluation forward: results do not depend on it, only speed and memory. On CPU a
    forward of 128 rows scores ~1.8x more rows per second than one of 1024 (two cores, embedded
    world; benchmarks/eval_rows.json); accelerators want large batches."""
    return 128 if str(device).startswith("cpu") else 1024


def config_from_run(run_json: Path):
    """The RunConfig a finished run recorded in its run.json (one line naming the file if unreadable)."""

    try:
        raw = json.loads(run_json.read_text())["config"]
        fields = RunConfig.__dataclass_fields__
        return RunConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in fields})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{run_json}: cannot read the run's settings ({type(exc).__name__}: {exc})") from None
