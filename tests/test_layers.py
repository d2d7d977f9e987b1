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


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def absolute_module(path: Path, node: ast.ImportFrom) -> str | None:
    """The module an ImportFrom names, relative ones (``from ..x import y``) resolved against ``path``'s package."""
    if node.level == 0:
        return node.module
    try:
        package = module_name(path).split(".") if path.name == "__init__.py" else module_name(path).split(".")[:-1]
    except ValueError:  # a file outside the package (the tests' own samples): its package is unknown
        return None
    if node.level - 1 > len(package):
        return None
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every qdoctor module a file imports (at any depth: lazy imports inside functions count too). ``from X import
    y`` names X.y when that is a module of qdoctor (``from qdoctor.facts import kinds``), else X."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "qdoctor"]
        elif isinstance(node, ast.ImportFrom):
            module = absolute_module(path, node)
            if not module or module.split(".")[0] != "qdoctor":
                continue
            if module == "qdoctor":
                # `from qdoctor import facts as F` names a layer; `from qdoctor import __version__` the root
                found += [(node.lineno, f"qdoctor.{a.name}" if a.name in RANK else "qdoctor") for a in node.names]
                continue
            submodules = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in MODULES]
            found += [(node.lineno, name) for name in submodules] or [(node.lineno, module)]
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


def test_no_relative_import_leaves_its_layer():
    """``from ..x import y`` hides which layer it reaches: inside one layer a relative import is only a shorter
    spelling, one that climbs out of it is an import across layers, and those are written out in full."""
    climbing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = layer_of(module_name(path))
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                target = absolute_module(path, node)
                if target is None or target.split(".")[0] != "qdoctor" or layer_of(target) != own:
                    where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
                    climbing.append(f"{where}: from {'.' * node.level}{node.module or ''} import ... ({target})")
    assert not climbing, "relative imports out of their layer (write `from qdoctor.<layer>...`):\n" + "\n".join(
        climbing
    )


def test_the_walker_resolves_relative_imports():
    inside = PACKAGE / "report" / "render" / "terminal_report.py"
    up_one = ast.parse("from ..model import Report\n").body[0]
    up_two = ast.parse("from ...diagnose.findings import Finding\n").body[0]
    assert isinstance(up_one, ast.ImportFrom) and isinstance(up_two, ast.ImportFrom)
    assert absolute_module(inside, up_one) == "qdoctor.report.model"
    assert absolute_module(inside, up_two) == "qdoctor.diagnose.findings"


# Cycles being broken on another branch; the lead removes each entry at merge, when its fix lands.
KNOWN_CYCLES: set[frozenset[str]] = set()  # none left


def import_cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of ``graph`` with more than one module (Tarjan): each is a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def layer_graph() -> dict[str, set[str]]:
    """Module -> the modules of its own layer it imports (lazy imports count; a package's ``__init__`` counts as the
    package; the implicit import of a parent package does not)."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        own = layer_of(name)
        graph[name] = {
            imported
            for _, imported in imported_modules(path)
            if imported in MODULES and imported != name and layer_of(imported) == own
        }
    return graph


def test_no_import_circle_inside_a_layer():
    """A data type that imports its renderer, which imports it back, is one circle; a layer's modules import each
    other one way only."""
    cycles = [c for c in import_cycles(layer_graph()) if frozenset(c) not in KNOWN_CYCLES]
    assert not cycles, "import circles inside a layer:\n" + "\n".join(" <-> ".join(sorted(c)) for c in cycles)


def test_the_cycle_finder_sees_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles(graph) == [{"a", "b", "c"}]


def test_known_cycles_are_still_there():
    """An entry of KNOWN_CYCLES stays only while its circle exists."""
    found = {frozenset(c) for c in import_cycles(layer_graph())}
    assert not KNOWN_CYCLES - found, f"broken, remove from KNOWN_CYCLES: {KNOWN_CYCLES - found}"
