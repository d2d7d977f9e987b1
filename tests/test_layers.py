"""The package's folders are the pipeline: each layer imports only the layers below it (CONTRIBUTING.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "qdoctor"

# Lowest first. A module may import its own layer and any layer listed before it, never one after it.
LAYERS = (
    ("qdoctor", "errors", "files"),  # the version, user-facing errors, atomic writes: import nothing of qdoctor
    ("facts",),
    ("introspect",),
    ("flows",),  # one module per quantization flow: detection, rebuild, recipes, snippets, lowering (no load/gather)
    ("load",),
    ("gather",),
    ("diagnose",),
    ("prescribe",),
    ("report",),
    ("run",),
    ("compare",),
    ("config",),  # [tool.qdoctor] settings: imports nothing of qdoctor
    ("api", "testing", "pytest_plugin"),  # qdoctor in Python: check_model/check/compare_model, assert_healthy, fixture
    ("cli", "__main__"),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def layer_of(module: str) -> str:
    """ "qdoctor.diagnose.rules.qd001" -> "diagnose"; "qdoctor" -> "qdoctor"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every qdoctor module a file imports (at any depth: lazy imports inside functions count too)."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "qdoctor"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "qdoctor":
                # `from qdoctor import facts as F` names a layer; `from qdoctor import __version__` the root
                found += [(node.lineno, f"qdoctor.{a.name}" if a.name in RANK else "qdoctor") for a in node.names]
            elif node.module.split(".")[0] == "qdoctor":
                found.append((node.lineno, node.module))
    return found


def test_every_module_belongs_to_a_layer():
    unknown = sorted({layer_of(module_name(p)) for p in PACKAGE.rglob("*.py")} - set(RANK))
    assert not unknown, f"folders or modules with no layer in LAYERS: {unknown}"


# The package re-exports the Python API (`qdoctor.check_model`): for type checkers only (under TYPE_CHECKING), and
# at run time by name in its module __getattr__, on first use. test_import_qdoctor_is_cheap checks it stays lazy.
REEXPORTS = {(PACKAGE / "__init__.py", "qdoctor.api")}


def test_imports_only_run_downward():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = layer_of(module_name(path))
        for line, imported in imported_modules(path):
            other = layer_of(imported)
            if (path, imported) in REEXPORTS:
                continue
            if RANK[other] > RANK[own]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {own} imports {imported} ({other} is above)")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_the_walker_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from qdoctor.run.check import check\n")
    assert imported_modules(bad) == [(2, "qdoctor.run.check")]


@pytest.mark.parametrize("layer", ["facts", "diagnose"])
def test_layer_imports_without_torch(layer):
    """Facts and rules are plain Python: the rules (and their unit tests) run without torch."""
    code = (
        "import sys, importlib, pkgutil\n"
        f"import qdoctor.{layer} as package\n"
        "for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "    importlib.import_module(info.name)\n"
        "from qdoctor.diagnose.registry import all_rules\n"
        "assert len(all_rules()) > 0\n"
        "leaked = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not leaked, leaked[:5]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_import_qdoctor_is_cheap():
    """`import qdoctor` (and so `qdoctor --help`) loads neither torch nor the API; `qdoctor.check_model` loads the API
    on first use, still without torch; the re-export in __init__ is typing-only."""
    code = (
        "import sys\n"
        "import qdoctor\n"
        "assert 'qdoctor.api' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)\n"
        "assert callable(qdoctor.check_model) and qdoctor.Report.__name__ == 'Report'\n"
        "import qdoctor.pytest_plugin, qdoctor.testing\n"
        "assert 'torch' not in sys.modules\n"
        "try:\n"
        "    qdoctor.no_such_name\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    guarded = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
    ]
    top_level = [
        node for node in tree.body if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("qdoctor")
    ]
    assert guarded and not top_level
