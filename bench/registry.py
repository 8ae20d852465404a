"""Lazy registry of methods and tasks, discovered through entry points.

Entry-point groups ``sae_circuit_bench.methods`` and ``sae_circuit_bench.tasks`` map a name to
``module:Class``. The suite's own methods and tasks register the same way a third-party package
does (see ``pyproject.toml``). Listing reads entry-point metadata only; a plugin's module is imported
when it is used, and one that fails to import is reported with its reason, never fatal.

Loading a plugin runs its code. ``BENCH_NO_PLUGINS=1`` turns off every entry point that does not
come from this suite's own distribution.

A method can also be named without packaging it: ``my_pkg.my_module:MyMethod`` or
``path/to/file.py:MyMethod``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from bench.errors import BenchError, UsageError, did_you_mean

log = logging.getLogger(__name__)

DIST = "sae-circuit-bench"
GROUPS = {"method": "sae_circuit_bench.methods", "task": "sae_circuit_bench.tasks",
          "executor": "sae_circuit_bench.executors"}

# Where the built-ins are listed: pyproject.toml's entry points (the one list). A source checkout
# (installed editable or not at all) reads the file itself, so a built-in added there is seen at
# once; an installed wheel, which has no pyproject.toml beside it, reads its metadata.
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@dataclass(frozen=True)
class Entry:
    """One registered method or task: where it lives and which package provides it."""

    kind: str
    name: str
    target: str
    package: str
    version: str

    @property
    def builtin(self) -> bool:
        return self.package == DIST


def plugins_enabled() -> bool:
    return os.environ.get("BENCH_NO_PLUGINS", "") not in ("1", "true", "yes")


def _builtins_from_source(group: str) -> dict[str, str] | None:
    """The suite's own entry points of ``group`` from the pyproject.toml beside the package, in the
    file's order; None where there is no such file (an installed wheel)."""
    import tomllib

    if not PYPROJECT.is_file():
        return None
    try:
        project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    except (OSError, KeyError, ValueError):
        return None
    if project.get("name") != DIST:
        return None  # some other project's file
    return dict(project.get("entry-points", {}).get(group, {}))


def builtins(kind: str, installed: list | None = None) -> dict[str, str]:
    """The suite's own ``kind``: name -> ``module:Class`` (pyproject.toml's entry points)."""
    group = GROUPS[kind]
    own = _builtins_from_source(group)
    if own is None:
        eps = installed if installed is not None else list(entry_points(group=group))
        own = {ep.name: ep.value for ep in eps if ep.dist is not None and ep.dist.metadata["Name"] == DIST}
    if not own:
        raise BenchError(f"no built-in {kind}s found: neither {PYPROJECT} nor the installed metadata of {DIST} lists "
                         f"the entry-point group {group!r}; reinstall the suite (pip install -e .)")
    return own


def entries(kind: str) -> dict[str, Entry]:
    """Every registered ``kind`` ('method', 'task' or 'executor'), without importing any of them.
    The suite's own come first; a plugin cannot take one of their names."""
    from bench.version import __version__

    installed = list(entry_points(group=GROUPS[kind]))
    found: dict[str, Entry] = {n: Entry(kind, n, t, DIST, __version__) for n, t in builtins(kind, installed).items()}
    for ep in installed:
        dist = ep.dist.metadata["Name"] if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        if dist == DIST or not plugins_enabled():
            continue
        if ep.name in found:
            log.warning("%s %r from %s ignored: the name is taken by %s", kind, ep.name, dist, found[ep.name].package)
            continue
        found[ep.name] = Entry(kind, ep.name, ep.value, dist, version)
    return found


def _import_target(target: str):
    module_name, _, attr = target.partition(":")
    if not attr:
        raise UsageError(f"{target!r}: expected 'module:Class' or 'path/to/file.py:Class'")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise UsageError(f"{target!r}: file {path} not found")
        spec = importlib.util.spec_from_file_location(f"bench_plugin_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UsageError(f"{target!r}: module {module_name!r} has no attribute {attr!r}") from None


class PluginLoadError(Exception):
    """A registered plugin could not be imported (its reason is the message)."""


def load(kind: str, name: str):
    """The class registered as ``name`` (or a ``module:Class`` / ``file.py:Class`` target, whose
    failure to import is the user's input error: one line, never a traceback)."""
    if ":" in name:
        try:
            return _import_target(name)
        except UsageError:
            raise
        except SyntaxError as exc:
            raise UsageError(f"{name!r}: {exc.filename or name.partition(':')[0]}, line {exc.lineno}: "
                             f"syntax error ({exc.msg})") from None
        except Exception as exc:  # noqa: BLE001 - a typed target that cannot be imported is bad input
            raise UsageError(f"{name!r}: cannot be imported ({type(exc).__name__}: {exc})") from None
    known = entries(kind)
    if name not in known:
        raise UsageError(did_you_mean(name, known, kind))
    try:
        return _import_target(known[name].target)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any import failure of a plugin is reported, not raised raw
        raise PluginLoadError(f"{kind} {name!r} ({known[name].package}) failed to load: {type(exc).__name__}: {exc}") from exc


def check_all(kind: str) -> dict[str, str | None]:
    """Import every registered ``kind``; name -> None if it loads, else the reason."""
    out = {}
    for name in entries(kind):
        try:
            load(kind, name)
            out[name] = None
        except (PluginLoadError, UsageError) as exc:
            out[name] = str(exc)
    return out
