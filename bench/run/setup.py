"""A task and seed made ready for every method: records -> tokens -> split -> ablation values,
candidate nodes, the node universe and the evaluator (:func:`setup_task`); and the named method or
task loaded from the registry (:func:`build_method`, :func:`load_task`)."""

from __future__ import annotations

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
