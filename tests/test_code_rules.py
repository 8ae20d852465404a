"""The structure's invariants, read from the source (so a refactor cannot quietly break them).

* ``bench/`` never imports the ``methods`` package: the registry loads methods by name, and the
  harness consumes only ``bench.api`` types. (``tasks`` is imported by the task interface and by
  the world builder, which trains the embedded model on the task generators.)
* Masks become latent edits in one place: ``mask_edit`` is called only by ``bench.model.masked``.
* TransformerLens hooks are touched only by ``bench/model/spliced.py`` (and the world builder, which
  trains the model): methods never see a hook.
* The shape (``tests/import_graph.py`` reads every import, inside functions too): no import cycle
  between files; no library module imports the CLI (``bench.cli`` is a leaf: only ``__main__``
  imports it); each stage imports only the stages below it (:data:`LAYERS`); no module is over 600
  lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.import_graph import cycles, graph

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


# ----- the shape ------------------------------------------------------------------------------------
# Stages, lowest first: a module may import its own stage and those below, never one above (the data
# flow task -> spliced model -> method -> circuits -> evaluator -> rows -> report, one way). The
# first-party packages outside bench/ sit where they belong: tasks with the model (the world is
# trained on the task generators; the hold-out split uses the world's word split), methods are
# plugins over bench.api, figures draw from the evaluation's tables.
LAYERS = (
    ("bench.version", "bench.errors", "bench.progress", "bench.data", "bench.registry"),
    ("bench.model", "tasks"),
    ("bench.api",),
    ("bench.eval", "bench.toys", "methods"),
    ("bench.run", "bench.testing"),
    ("bench.plan",),
    ("bench.report", "figures"),
    ("bench.studies", "bench.benchmark"),
    ("bench.cli", "bench.__main__", "bench"),  # "bench" itself: the package's face, re-exporting the API lazily
)
MAX_LINES = 600


def layer_of(module: str) -> int:
    """The layer of the deepest entry naming ``module`` or a package above it ("bench" names only the
    package's own ``__init__``: every module under it is placed explicitly)."""
    best, depth = None, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            covers = module == p or (p != "bench" and module.startswith(p + "."))
            if covers and p.count(".") > depth:
                best, depth = i, p.count(".")
    assert best is not None, f"{module}: in no layer of LAYERS; place it there"
    return best


@pytest.fixture(scope="module")
def imports():
    return graph(ROOT)


def test_no_import_cycle_between_files(imports):
    assert cycles(imports) == []


def test_no_library_module_imports_the_cli(imports):
    def is_cli(m: str) -> bool:
        return m == "bench.cli" or m.startswith("bench.cli.") or m == "bench.__main__"

    offenders = {m: sorted(d for d in deps if is_cli(d)) for m, deps in imports.items() if not is_cli(m)}
    assert {m: d for m, d in offenders.items() if d} == {}


def test_each_stage_imports_only_the_stages_below_it(imports):
    upward = {m: sorted(d for d in deps if layer_of(d) > layer_of(m)) for m, deps in imports.items()}
    assert {m: d for m, d in upward.items() if d} == {}


def test_bench_is_split_into_stage_subpackages():
    stages = sorted(p.name for p in (ROOT / "bench").iterdir() if (p / "__init__.py").is_file())
    assert len(stages) >= 5, stages


def test_no_module_is_over_600_lines():
    files = [p for folder in ("bench", "methods", "tasks", "figures", "tests", "benchmarks") for p in _py(folder)]
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_cycle_check_sees_an_import_inside_a_function(tmp_path):
    """The rule can fail: a cycle closed by an import inside a function is found."""
    pkg = tmp_path / "bench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from bench.b import g\n")
    (pkg / "b.py").write_text("def g():\n    from bench import a\n    return a\n")
    (pkg / "c.py").write_text("from . import a\n")
    g = graph(tmp_path, ("bench",))
    assert g["bench.c"] == {"bench.a"}
    assert cycles(g) == [["bench.a", "bench.b"]]


# ----- cache keys from the code that ran -----------------------------------------------------------

def test_the_evaluation_key_covers_what_the_cell_pipeline_imports():
    from bench.run.keys import EVALUATION_ROOTS, FIRST_PARTY, module_closure

    found = module_closure(EVALUATION_ROOTS, FIRST_PARTY)
    # found from the imports, not from a list: the evaluator, sizes, masked runs, ablation, data, the
    # spliced model, the answer controls, the world's loading and the task interface
    for m in ("bench.eval.evaluate", "bench.eval.sizes", "bench.model.masked", "bench.model.ablation", "bench.data",
              "bench.model.spliced", "bench.run.controls", "bench.model.loading", "bench.api", "tasks.base"):
        assert m in found, m
    assert not any(m.startswith(("methods", "bench.cli", "bench.report")) for m in found), sorted(found)


def test_a_module_without_its_source_file_is_an_error_not_skipped(monkeypatch):
    from bench.run import keys

    real = keys._spec_origin
    monkeypatch.setattr(keys, "_spec_origin",
                        lambda name: (Path("/nonexistent/sizes.py"), False) if name == "bench.eval.sizes" else real(name))
    with pytest.raises(keys.SourceError, match="bench.eval.sizes"):
        keys.module_closure(keys.EVALUATION_ROOTS, keys.FIRST_PARTY)


def test_a_method_key_covers_its_own_module_only():
    from bench import registry
    from bench.run.keys import method_source_key, module_closure

    cls = registry.load("method", "binary_mask")
    assert sorted(module_closure((cls.__module__,), ("methods",))) == ["methods.binary_mask"]
    assert method_source_key(cls) != method_source_key(registry.load("method", "random"))


def test_the_closure_follows_relative_submodule_and_function_imports(tmp_path, monkeypatch):
    """Found from the imports themselves: relative imports, ``from pkg import module``, imports inside
    functions, transitively; a folder without ``__init__`` (namespace) has no code of its own; a
    third-party package is never followed."""
    import sys

    from bench.run.keys import module_closure

    root = tmp_path / "keyprobe"
    (root / "sub").mkdir(parents=True)
    (root / "ns").mkdir()
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("")
    (root / "a.py").write_text("from .sub import b\nimport numpy\n")
    (root / "sub" / "b.py").write_text("def f():\n    from keyprobe import c\n    return c\n")
    (root / "c.py").write_text("from keyprobe.ns import d\n")
    (root / "ns" / "d.py").write_text("X = 1\n")
    (root / "unused.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        found = module_closure(("keyprobe.a",), ("keyprobe",))
    finally:
        for m in [m for m in sys.modules if m.startswith("keyprobe")]:
            del sys.modules[m]
    assert sorted(found) == ["keyprobe", "keyprobe.a", "keyprobe.c", "keyprobe.ns.d", "keyprobe.sub", "keyprobe.sub.b"]


def test_a_method_built_on_another_is_keyed_on_both(tmp_path, monkeypatch):
    import sys

    from bench.run import keys

    (tmp_path / "myplug.py").write_text("from methods.random_ranking import Random\n\n"
                                        "class MyRandom(Random):\n    name = 'my_random'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import myplug

        assert sorted(keys.method_modules(myplug.MyRandom)) == ["methods.random_ranking", "myplug"]
        before = keys.method_source_key(myplug.MyRandom)
        real = keys._read_source
        monkeypatch.setattr(keys, "_read_source", lambda p: real(p) + (b"#" if p.name == "random_ranking.py" else b""))
        keys.clear()
        assert keys.method_source_key(myplug.MyRandom) != before  # the base's edit reaches the subclass
    finally:
        sys.modules.pop("myplug", None)
        monkeypatch.undo()
        keys.clear()
