"""A task and seed made ready for every method: records -> tokens -> split -> ablation values,
candidate nodes, the node universe and the evaluator (:func:`setup_task`); and the named method or
task loaded from the registry (:func:`build_method`, :func:`load_task`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from bench.api import Method, MethodContext
from bench.data import TaskData, split_train_test, tokenize_records
from bench.errors import MethodFailure, UsageError
from bench.eval.evaluate import Evaluator, SplitData
from bench.eval.sizes import n_nodes, union
from bench.model.ablation import candidates, make_replacement
from bench.run.config import RunConfig


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


def method_params(method: Method) -> dict:
    return method.config.to_dict()


def method_class(name: str) -> type[Method]:
    """The class of method ``name`` (a registered name, ``module:Class`` or ``file.py:Class``)."""
    from bench import registry

    cls = registry.load("method", name)
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise MethodFailure(f"{name!r} is not a bench Method subclass")
    return cls


def _type_ok(value, default) -> bool:
    import numbers

    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, tuple | list):
        return isinstance(value, tuple | list)
    return True  # None or another type: the method's own checks judge it


def check_method_options(name: str, cls: type[Method], opts: dict) -> None:
    """Every key a field of the method's ``Config`` and every value of its default's type: one line
    naming the option and the method's options otherwise."""
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    for key, value in opts.items():
        if key not in fields:
            raise UsageError(f"method {name!r}: unknown option {key!r}; its options: {', '.join(fields) or '(none)'}")
        f = fields[key]
        default = f.default if f.default is not dataclasses.MISSING else None
        if not _type_ok(value, default):
            raise UsageError(f"method {name!r}: option {key}={value!r} should be {type(default).__name__} "
                             f"(default {default!r})")


def build_method(name: str, cfg: RunConfig) -> Method:
    cls = method_class(name)
    opts = dict(cls.quick_overrides) if cfg.quick else {}
    user = cfg.method_options.get(name, cfg.method_options.get(getattr(cls, "name", ""), {}))
    check_method_options(name, cls, user)
    opts.update(user)
    try:
        return cls(**opts)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"method {name!r}: bad option(s) {opts}: {exc}") from None


def preflight(cfg: RunConfig) -> None:
    """Everything a user typed, checked before the world loads and before any cell runs, each failure
    one line (exit 2): method and task names, method targets (imported now), method options (they
    must name a method of the run, with known keys of the right type), task files (read and
    validated now), the device. A registered plugin that fails to import is not an input error: its
    cells fail, the others run."""
    from bench import registry
    from bench.errors import did_you_mean
    from bench.registry import PluginLoadError

    methods = registry.entries("method")
    for name in cfg.methods:
        if ":" not in name and name not in methods:
            raise UsageError(did_you_mean(name, methods, "method"))
    classes = {}
    for name in cfg.methods:
        try:
            cls = method_class(name)
        except (PluginLoadError, MethodFailure) as exc:
            if ":" in name:
                raise UsageError(str(exc)) from None
            continue  # a broken registered plugin: error cells
        classes[name] = classes[getattr(cls, "name", name) or name] = cls
    has_edges = any(getattr(c, "unit", "nodes") == "edges" for c in classes.values())
    if has_edges:
        _preflight_edges(cfg, methods)
        if cfg.edge_node_method not in classes:  # the edge universe's node method takes options too
            classes[cfg.edge_node_method] = method_class(cfg.edge_node_method)
    for key, opts in cfg.method_options.items():
        if key not in classes and key not in cfg.methods:
            usable = sorted({getattr(c, "name", "") or n for n, c in classes.items() if ":" not in n} | {m for m in cfg.methods if ":" not in m})
            raise UsageError(f"options for {key!r}: {key!r} is not a method of this run (options are keyed by: "
                             f"{', '.join(usable)})")
        if key in classes:
            check_method_options(key, classes[key], opts)
    tasks = registry.entries("task")
    for name in cfg.tasks:
        if name.endswith((".json", ".jsonl")):
            load_task(name)  # reads and validates the file (TaskFileError: one line naming file and record)
        elif ":" not in name and name not in tasks and name not in _IN_MEMORY_TASKS:
            raise UsageError(did_you_mean(name, tasks, "task"))
    check_device(cfg.device)


def _preflight_edges(cfg: RunConfig, methods) -> None:
    """A run with edge methods: the edge universe's node method exists and ranks nodes, and the error
    policy has edge semantics (bench.eval.edges.EDGE_POLICIES)."""
    from bench.errors import did_you_mean
    from bench.eval.edges import EDGE_POLICIES

    if cfg.error_policy not in EDGE_POLICIES:
        raise UsageError(f"--error-policy {cfg.error_policy}: edge methods need one of {', '.join(EDGE_POLICIES)} "
                         "('keep' has no single input to take the error of under an edge circuit)")
    name = cfg.edge_node_method
    if ":" not in name and name not in methods:
        raise UsageError("--edge-node-method: " + did_you_mean(name, methods, "method"))
    try:
        cls = method_class(name)
    except Exception as exc:  # noqa: BLE001 - a plugin that cannot load: one line, before any cell
        raise UsageError(f"--edge-node-method {name}: cannot load it ({exc})") from None
    if getattr(cls, "unit", "nodes") != "nodes":
        raise UsageError(f"--edge-node-method {name}: an edge method; the edge universe needs a node method")


def check_device(device: str) -> None:
    """``device`` names a device this torch can use."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UsageError(f"--device {device!r}: not a device name ({exc})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device!r}: this torch has no usable CUDA (torch.cuda.is_available() is False)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type not in ("cpu", "mps"):
        raise UsageError(f"--device {device!r}: expected cpu or cuda[:N]")


# Task objects handed to bench.evaluate, by name (this process only: inline runs).
_IN_MEMORY_TASKS: dict = {}


def use_task(task) -> str:
    """Serve a ``tasks.base.Task`` object in this process under a key of its own (never a registered
    name: it shadows nothing); returns the key. Its rows carry the task's own name."""
    from tasks.base import Task

    if not isinstance(task, Task):
        raise UsageError(f"task {task!r}: expected a name, a .json/.jsonl file or a tasks.base.Task")
    name = getattr(task, "name", "")
    if not name:
        raise UsageError(f"task {type(task).__name__}: a Task object needs a name")
    key = f"{name}@memory{id(task):x}"
    _IN_MEMORY_TASKS[key] = task
    return key


def drop_task(key: str) -> None:
    """Stop serving an in-memory task (the end of the bench.evaluate call that added it)."""
    _IN_MEMORY_TASKS.pop(key, None)


def load_task(name: str):
    from bench import registry
    from tasks.base import FileTask, Task

    if name in _IN_MEMORY_TASKS:
        return _IN_MEMORY_TASKS[name]
    if name.endswith((".json", ".jsonl")):
        return FileTask(name)
    cls = registry.load("task", name)
    task = cls() if isinstance(cls, type) else cls
    if not isinstance(task, Task):
        raise UsageError(f"task {name!r} does not implement tasks.base.Task")
    return task


def task_train_sizes(tasks: tuple[str, ...]) -> dict[str, int]:
    """Tasks' own train sizes (e.g. IOI: 512), used where the user gave none and the run is not quick."""
    out = {}
    for name in tasks:
        try:
            n = getattr(load_task(name), "n_train", None)
        except Exception:  # noqa: BLE001 - a bad task is reported by the run itself, with its one line
            continue
        if n:
            out[name] = int(n)
    return out


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
    if cfg.answers != "task":  # a control (bench.run.controls): answers shuffled and/or oriented per split
        from bench.run.controls import apply_answers

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


def make_deterministic() -> None:
    """``--deterministic``: deterministic torch kernels. On CUDA, cuBLAS needs a fixed workspace
    (``CUBLAS_WORKSPACE_CONFIG``, read when CUDA starts: set here before any CUDA work) or torch
    refuses its matmuls; a value the user set is kept."""
    import os

    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
