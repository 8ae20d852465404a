"""The Python API: the benchmark on your own model and SAEs, from a notebook.

:func:`evaluate` takes a TransformerLens ``HookedTransformer`` and a dict of SAELens ``SAE``s (or a
preset name), runs the same cells as ``python -m bench run`` (the same runner, evaluator and rows)
and returns :class:`Results`. The CLI is a thin layer over the same runner; for a preset the two give
the same rows (``tests/test_benchmark_api.py``).

A model handed in as an object runs in this process (the inline executor): workers of the process
or Ray executors cannot receive it. Give a preset name to use them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from bench.errors import UsageError, did_you_mean
from bench.run.config import DEFAULT_TASKS, RunConfig, make_config

# The files of a results folder that `bench figures` reads (the cells are a cache, not results).
RESULT_FILES = ("results.parquet", "results.csv", "run.json", "latent_labels.parquet")


class Results:
    """A finished run: its rows, and the verdict, figures and folder made from them."""

    def __init__(self, path: str | Path, failures: Sequence[str] = ()):
        from bench.run.results import load_results

        self.path = Path(path)
        self.rows: pd.DataFrame = load_results(self.path)
        self.failures: list[str] = list(failures)  # "task / seed / method: reason" of each failed cell

    def __repr__(self) -> str:
        failed = f", {len(self.failures)} failed cell(s)" if self.failures else ""
        return f"Results({self.path}, {len(self.rows)} rows{failed})"

    def tables(self, n_boot: int = 2000) -> dict[str, pd.DataFrame]:
        """Every table of the report (matched sizes, pairwise verdicts, levels, area, train vs test, …)."""
        from bench.eval import verdict

        return verdict.build(self.rows, n_boot)

    def verdict(self, n_boot: int = 2000) -> pd.DataFrame:
        """The matched-size verdict: F(mask) − F(other) with its interval and the word, per task and size."""
        return self.tables(n_boot)["pairwise"]

    def plot(self, name: str, out_dir: str | Path | None = None) -> list[Path]:
        """Draw one registered figure (``figures.FIGURES``) into ``out_dir`` (default: a ``figures``
        folder beside the rows); in a notebook it is shown inline. Returns the written files."""
        from figures import FIGURES

        if name not in FIGURES:
            raise UsageError(did_you_mean(name, tuple(FIGURES), "figure"))
        import inspect

        from bench.run.labels import load_labels

        fn = FIGURES[name]
        extra = {"labels": load_labels(self.path)} if "labels" in inspect.signature(fn).parameters else {}
        paths = fn(self.rows, Path(out_dir) if out_dir else self.path / "figures", **extra)
        _show([p for p in paths if p.suffix == ".png"])
        return paths

    def save(self, out: str | Path) -> Path:
        """A results folder (rows, run.json, labels) that ``python -m bench figures --results OUT``
        redraws, figures and report included."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for name in RESULT_FILES:
            if (self.path / name).is_file() and (self.path / name).resolve() != (out / name).resolve():
                shutil.copy2(self.path / name, out / name)
        return out


def _show(paths: list[Path]) -> None:
    """Display PNGs inline when running under IPython (a notebook); nothing otherwise."""
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return
    if get_ipython() is None:
        return
    for p in paths:
        display(Image(filename=str(p)))


def _fingerprint(model, saes: Mapping[str, object], tokenizer) -> str:
    """What identifies an in-memory model, its SAEs and tokenizer for the cell cache: configs, the
    vocabulary, every tensor's name, shape and dtype, its sum (to 9 digits, so the thread count's
    rounding never changes it) and a strided sample of its values (hashing every byte of a
    9B-parameter model would take minutes)."""
    import torch

    h = hashlib.sha256()

    def add_module(prefix: str, module) -> None:
        for name, t in sorted(module.state_dict().items()):
            flat = t.detach().reshape(-1)
            step = max(1, flat.numel() // 4096)
            sample = flat[::step].to(torch.float32).cpu().numpy().tobytes()
            total = float(t.detach().sum(dtype=torch.float64)) if t.is_floating_point() else float(t.sum())
            h.update(f"{prefix}{name}{tuple(t.shape)}{t.dtype}{total:.9e}".encode())
            h.update(sample)

    h.update(json.dumps(model.cfg.to_dict(), sort_keys=True, default=str).encode())
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    h.update(json.dumps(sorted(vocab.items()), default=str).encode())
    add_module("model.", model)
    for hook in sorted(saes):
        sae = saes[hook]
        h.update(json.dumps(sae.cfg.to_dict(), sort_keys=True, default=str).encode())
        add_module(f"sae.{hook}.", sae)
    return h.hexdigest()[:16]


def world_from_objects(model, saes: Mapping[str, object], *, error_policy: str = "drop", tokenizer=None,
                       name: str = "custom"):
    """A :class:`bench.model.loading.World` around a ``HookedTransformer`` and SAELens SAEs keyed by hook."""
    from sae_lens import SAE
    from transformer_lens import HookedTransformer

    from bench.model.loading import World
    from bench.model.presets import DTYPES, Preset
    from bench.model.spliced import SplicedModel

    if not isinstance(model, HookedTransformer):
        raise UsageError(f"model: expected a transformer_lens HookedTransformer or a preset name, got {type(model).__name__}")
    if not isinstance(saes, Mapping) or not saes:
        raise UsageError("saes: expected a non-empty dict of hook name -> sae_lens SAE")
    m_param = next(model.parameters())
    for hook, sae in saes.items():
        if not isinstance(sae, SAE):
            raise UsageError(f"saes[{hook!r}]: expected a sae_lens SAE, got {type(sae).__name__}")
        wanted = getattr(sae.cfg.metadata, "hook_name", None)
        if wanted and wanted != hook:
            raise UsageError(f"saes[{hook!r}]: this SAE was trained at {wanted!r}")
        s_param = next(sae.parameters())
        if s_param.device != m_param.device or s_param.dtype != m_param.dtype:
            raise UsageError(f"saes[{hook!r}]: on {s_param.device} in {s_param.dtype}, the model on {m_param.device} in "
                             f"{m_param.dtype}; load the SAE with device= and dtype= the model's")
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    if tokenizer is None:
        raise UsageError("the model has no tokenizer: pass tokenizer= (a Hugging Face tokenizer)")
    dtype = str(model.cfg.dtype).removeprefix("torch.")
    if dtype not in DTYPES:
        raise UsageError(f"model dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    hooks = tuple(saes)
    preset = Preset(name=name, model=str(model.cfg.model_name or name), sae_release="(in memory)", sae_ids=hooks,
                    dtype=dtype, description="a model and SAEs handed to bench.evaluate")
    spliced = SplicedModel(model, dict(saes), error_policy)
    return World(preset, spliced, tokenizer, hooks, _fingerprint(model, saes, tokenizer), {"source": "in memory"})


def _names(value, what: str) -> list:
    """A list of names from a list, a tuple or one name (a plain string is one name, not its letters)."""
    if isinstance(value, str | Path):
        return [value]
    try:
        return list(value)
    except TypeError:
        raise UsageError(f"{what}: expected a list, got {type(value).__name__}") from None


def evaluate(model=None, saes: Mapping[str, object] | None = None, *, tasks: Sequence = DEFAULT_TASKS,
             methods: Sequence[str] | None = None, seeds: Sequence[int] | None = None, n_train: int | None = None,
             n_test: int | None = None, quick: bool = False, error_policy: str = "drop", ablation: str = "mean",
             device: str | None = None, dtype: str | None = None, sites: Sequence[str] = (),
             out: str | Path | None = None, progress: bool = True, tokenizer=None, name: str = "custom",
             executor: str = "inline", jobs: int = 1, **method_options: Mapping) -> Results:
    """Run the benchmark and return its :class:`Results`.

    ``model``: a ``HookedTransformer`` with ``saes`` a dict hook name -> SAELens ``SAE`` (on the
    model's device, in its dtype); or a preset name (``"embedded"``, ``"gemma-2-2b"``, a TOML file)
    with ``saes=None``. ``tasks``: built-in names, ``.json``/``.jsonl`` task files or
    ``tasks.base.Task`` objects. ``methods``, ``seeds``, ``n_train``, ``n_test``: default to a full run's (or
    ``quick``'s: no references). ``dtype``: a preset's dtype for this run (a model object runs in its own). Any
    other keyword is a method's options: ``binary_mask={"steps": 100}``. ``out``: the results folder
    (default: a new temporary one; :meth:`Results.save` copies it). On CUDA a preset's batch-like
    options are fitted to the device's memory, as the CLI fits them. The model and SAEs are put in
    eval mode with gradients off (the spliced model freezes them); a hook the model lacks, or an SAE
    whose width is not the residual's, is one line of error. Failed cells are in
    ``Results.failures`` (and logged); the other cells' rows are kept.
    """
    import logging
    from types import SimpleNamespace

    from bench.run.runner import drop_world, run_benchmark
    from bench.run.setup import check_device, drop_task, task_train_sizes, use_task

    model = "embedded" if model is None else model
    world = None
    if isinstance(model, str | Path):
        if saes is not None:
            raise UsageError("saes: give SAEs with a model object; a preset brings its own")
        preset = str(model)
    else:
        if saes is None:
            raise UsageError("saes: a model object needs its SAEs (a dict hook name -> sae_lens SAE)")
        if executor != "inline":
            raise UsageError(f"executor {executor!r}: a model handed in as an object runs inline (workers cannot "
                             "receive it); give a preset name to use the process or ray executor")
        if dtype is not None:
            raise UsageError("dtype: a model object runs in its own dtype; convert it (model.to(dtype)) before")
        world = world_from_objects(model, saes, error_policy=error_policy, tokenizer=tokenizer, name=name)
        preset = f"{name}@memory{world.fingerprint}"  # a private key: it never shadows a preset's cached world
        device = device or str(next(model.parameters()).device)
    device = device or "cpu"
    check_device(device)
    methods = None if methods is None else tuple(_names(methods, "methods"))
    for key, opts in method_options.items():  # names, keys and types are checked with the CLI's (preflight)
        if not isinstance(opts, Mapping):
            raise UsageError(f"{key}=…: expected a dict of options, e.g. {key}={{'option': value}}")
    keys = []
    try:
        for t in _names(tasks, "tasks"):
            if isinstance(t, str | Path):
                keys.append(str(t))
            elif executor != "inline":
                raise UsageError(f"executor {executor!r}: a Task object runs inline (workers cannot receive it)")
            else:
                keys.append(use_task(t))
        cfg = make_config(quick, device, preset=preset, tasks=tuple(keys), methods=methods, error_policy=error_policy,
                          ablation=ablation, seeds=tuple(seeds) if seeds is not None else None, n_train=n_train,
                          n_test=n_test, method_options={k: dict(v) for k, v in method_options.items()},
                          sites=tuple(sites), dtype=dtype)
        if n_train is None and not quick:
            cfg = dataclasses.replace(cfg, task_n_train=task_train_sizes(cfg.tasks))
        if world is None:  # a preset: the CLI's memory fit (on CUDA: batch-like options to the device's memory)
            from bench.plan.budget import apply_budget

            cfg = apply_budget(cfg, SimpleNamespace(max_memory=None, device=device, executor=executor, jobs=jobs,
                                                    max_rows=None))
        out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="bench-"))
        _, failures = run_benchmark(cfg, out, progress=progress, executor=executor, jobs=jobs, world=world)
    finally:
        for k in keys:
            drop_task(k)
        if world is not None:
            drop_world(cfg if "cfg" in locals() else RunConfig(preset=preset))
    if failures:
        logging.getLogger("bench").warning("%d cell(s) failed (Results.failures); every other cell is kept", len(failures))
    return Results(out, failures)
