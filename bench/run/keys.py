"""Cache keys of cells: a finished cell is reused only when everything that made it is unchanged.

A cell's key holds its settings, the world's fingerprint, the task and seed, the method's name,
version and options, and two hashes of source code, each found from the imports themselves (never
from a list of file names, which a move would silently outdate):

* :func:`code_version`: every first-party module (``bench``, ``tasks``) that the cell pipeline
  imports, directly or not (:data:`EVALUATION_ROOTS`), imports inside functions included. Editing
  the evaluator, the sizes, the spliced model, the data or anything they import recomputes every
  cell. The closure errs on the side of recomputing: it also holds modules a cell only touches
  lazily (the progress bar, the registry, the world's trainer behind the loader), so editing those
  recomputes cells too.
* :func:`method_source_key`: the modules of the method's class and of every class it inherits
  from, and what they import from their own packages and the first-party ones, less what
  :func:`code_version` already holds. Editing one method recomputes only that method's cells (and
  those of methods built on it).

A module the closure needs whose source file cannot be found is an error (:class:`SourceError`),
never skipped: a key that silently leaves a file out would reuse stale cells.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import sys
from dataclasses import asdict
from pathlib import Path

from bench.api import Method
from bench.errors import BenchError
from bench.run.config import RunConfig
from bench.version import SCHEMA_VERSION

# What computes a cell's rows and writes its file: the world's loading and splicing, setup (data,
# ablation, candidates, evaluator), the cell's steps, its rows, the runner and the results store.
# Everything they import from the first-party packages below is hashed with them.
EVALUATION_ROOTS = ("bench.model.loading", "bench.run.setup", "bench.run.cell", "bench.run.rows", "bench.run.runner",
                    "bench.run.results")
FIRST_PARTY = ("bench", "tasks")


class SourceError(BenchError):
    """A module that a cache key must cover has no readable source file."""


def _read_source(path: Path) -> bytes:
    """The bytes a key hashes (one function, so a test can stand in an edited file)."""
    return path.read_bytes()


def _spec_origin(name: str) -> tuple[Path | None, bool]:
    """(source file, is a namespace package) of module ``name``; (None, False) if not found."""
    mod = sys.modules.get(name)
    file = getattr(mod, "__file__", None) if mod is not None else None
    if file:
        return Path(file), False
    try:
        spec = importlib.util.find_spec(name)
    except Exception:  # noqa: BLE001 - a module that cannot even be looked up is "not found" (then an error)
        return None, False
    if spec is None:
        return None, False
    if spec.origin in (None, "namespace") and spec.submodule_search_locations is not None:
        return None, True
    return (Path(spec.origin) if spec.origin else None), False


def _is_module(name: str) -> bool:
    path, namespace = _spec_origin(name)
    return namespace or path is not None


def _imports(path: Path, module: str, is_package: bool, within: tuple[str, ...]) -> set[str]:
    """Every module named by an import statement of ``path`` (anywhere in it, functions included);
    ``from a import b`` counts ``a.b`` too when that is a module. Only modules of the packages
    ``within`` are looked up (a third-party package is never imported to build a key)."""
    tree = ast.parse(_read_source(path), filename=str(path))
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            if target.split(".")[0] in within:
                out |= {f"{target}.{a.name}" for a in node.names if a.name != "*" and _is_module(f"{target}.{a.name}")}
    return out


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def module_closure(roots: tuple[str, ...] | list[str], within: tuple[str, ...]) -> dict[str, Path]:
    """Module name -> source file of ``roots`` and of every module in the packages ``within`` that
    they import, transitively (their parent packages' ``__init__`` too, which importing runs)."""
    found: dict[str, Path] = {}
    todo = [p for r in roots for p in _with_parents(r)]
    while todo:
        name = todo.pop()
        if name in found or name.split(".")[0] not in within:
            continue
        path, namespace = _spec_origin(name)
        if namespace:
            continue  # a folder without __init__.py: no code of its own
        if path is None or not path.is_file():
            raise SourceError(f"cache key: the source of module {name!r} cannot be found ({path or 'no file'}); "
                              "a key without it could reuse stale cells")
        found[name] = path
        for dep in _imports(path, name, path.name == "__init__.py", within):
            todo += [p for p in _with_parents(dep) if p not in found]
    return found


def _hash(files: dict[str, Path]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + _read_source(files[name]) + b"\0")
    return h.hexdigest()[:12]


@functools.cache
def code_version() -> str:
    """A hash of the evaluation code: every first-party module the cell pipeline imports."""
    return _hash(module_closure(EVALUATION_ROOTS, FIRST_PARTY))


def method_modules(cls: type) -> dict[str, Path]:
    """The source files behind a method class beyond the evaluation code: the modules of the class
    and of its bases (not ``bench.api``'s ``Method`` or builtins), and what they import from their own
    packages and the first-party ones. (The standard library's modules are not hashed.)"""
    roots = sorted({k.__module__ for k in cls.__mro__
                    if k.__module__ != "bench.api" and k.__module__.split(".")[0] not in sys.stdlib_module_names})
    within = tuple(sorted({r.split(".")[0] for r in roots} | set(FIRST_PARTY)))
    evaluation = module_closure(EVALUATION_ROOTS, FIRST_PARTY)
    return {n: p for n, p in module_closure(roots, within).items() if n not in evaluation}


@functools.cache
def method_source_key(cls: type) -> str:
    """A hash of the source behind a method class (:func:`method_modules`)."""
    return _hash(method_modules(cls))


def clear() -> None:
    """Forget the cached hashes (after a source file changed in this process)."""
    code_version.cache_clear()
    method_source_key.cache_clear()


def _key(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# Settings of the edge universe: they change edge cells only (bench.run.edge_universe).
EDGE_FIELDS = ("edge_node_method", "edge_max_nodes")


def edge_universe_key(cfg: RunConfig) -> list:
    """What an edge cell's universe depends on beyond the task: its settings and the node method it is
    cut from (name, version, options, source), so editing that method recomputes the edge cells."""
    from bench.run.setup import build_method

    node = build_method(cfg.edge_node_method, cfg)
    return [cfg.edge_node_method, cfg.edge_max_nodes, node.name, node.version, node.config.to_dict(),
            method_source_key(type(node))]


def cell_key(cfg: RunConfig, world, task_name: str, task_version: str, seed: int, method: Method | str,
             extra_sizes: list[int] | None = None) -> str:
    skip = ("tasks", "methods", "method_options", "world_dir", "device", "seeds", "max_rows") + EDGE_FIELDS
    settings = {k: v for k, v in asdict(cfg).items() if k not in skip}
    if isinstance(method, str):
        mid = method
    else:
        mid = [method.name, method.version, method.config.to_dict(), method_source_key(type(method))]
        if getattr(method, "unit", "nodes") == "edges":
            mid.append(edge_universe_key(cfg))
    return _key([SCHEMA_VERSION, code_version(), settings, world.fingerprint, task_name, task_version, seed, mid,
                 sorted(extra_sizes or [])])
