"""The structure's invariants, read from the source (so a refactor cannot quietly break them).

* ``bench/`` never imports the ``methods`` package: the registry loads methods by name, and the
  harness consumes only ``bench.api`` types. (``tasks`` is imported by the task interface and by
  the world builder, which trains the embedded model on the task generators.)
* Masks become latent edits in one place: ``mask_edit`` is called only by ``bench.model.masked``.
* TransformerLens hooks are touched only by ``bench/model/spliced.py`` (and the world builder, which
  trains the model): methods never see a hook.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _py(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "embedded" not in p.parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_bench_does_not_import_the_methods_package():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if m.split(".")[0] == "methods")
                 for p in _py("bench")}
    offenders = {k: v for k, v in offenders.items() if v}
    assert offenders == {}, offenders


def test_mask_edits_are_built_in_one_place():
    users = [str(p.relative_to(ROOT)) for p in [*_py("bench"), *_py("methods")]
             if "mask_edit(" in p.read_text() and p.name not in ("spliced.py",)]
    assert users == ["bench/model/masked.py"], users
    # and no method builds a latent edit of its own (selection or interpolation of latents)
    own = [str(p.relative_to(ROOT)) for p in _py("methods") if "def edit(" in p.read_text() or "torch.where(" in p.read_text()]
    assert own == [], own


def test_only_the_spliced_model_touches_hooks():
    needles = ("hook_dict", ".hooks(", "add_hook", "run_with_hooks")
    users = [str(p.relative_to(ROOT)) for p in [*_py("bench"), *_py("methods")]
             if any(n in p.read_text() for n in needles) and "world" not in p.parts]
    assert sorted(users) == ["bench/model/spliced.py"], users
