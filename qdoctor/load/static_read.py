"""Read a report's Python without running it: its quantization steps in order, with their lines.

What a report's code does is known from running it; what did not run (a block cut or pasted without indentation, a
function never called, a statement that raised, a script that defined no model qdoctor could run) can still be
read. ``read_steps`` walks the AST of the report's script, and the lines of code blocks that did not run one line at
a time, and returns qdoctor.facts.report.StaticRead: prepare / convert / calibration calls / eval / train / fuse /
quantize_dynamic / the engine / .cuda() / float ops in an eager forward / names torch does not have. The rules
(qdoctor.diagnose) decide what those steps mean. Nothing of the user's code runs here; names imported from torch are
looked up in the installed torch.
"""

from __future__ import annotations

import ast
import importlib
import warnings
from collections.abc import Iterable
from functools import lru_cache

from qdoctor.facts import report as R
from qdoctor.facts.report import StaticRead, StaticStep

_PREPARE = {"prepare", "prepare_fx", "prepare_qat", "prepare_qat_fx", "prepare_pt2e", "prepare_qat_pt2e"}
_CONVERT = R.CONVERT_FUNCTIONS
_FUSE = {"fuse_modules", "fuse_modules_qat", "fuse_fx", "fuse_model"}
_QCONFIG = {
    "get_default_qconfig",
    "get_default_qat_qconfig",
    "get_default_qconfig_mapping",
    "get_default_qat_qconfig_mapping",
}
_STUBS = ("QuantStub", "QuantWrapper")


def dotted(node: ast.AST) -> str | None:
    """``torch.ao.quantization.prepare`` for the expression that names it; None for anything else."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _text(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except Exception:  # an AST unparse does not know: described by its type
        return type(node).__name__


@lru_cache(maxsize=512)
def _has(module: str, name: str) -> bool | None:
    """Does the installed torch have ``module.name``? None when the module itself does not import (named then)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = importlib.import_module(module)
    except Exception:
        return None
    if hasattr(found, name):
        return True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module(f"{module}.{name}")
    except Exception:
        return False
    return True


def _missing(path: str) -> str | None:
    """``module:name`` when a dotted torch name does not exist in the installed torch (its longest importable
    prefix, then the first attribute it lacks); None when it exists or is not torch's."""
    parts = path.split(".")
    if parts[0] != "torch" or len(parts) < 2:
        return None
    module = parts[0]
    for name in parts[1:]:
        has = _has(module, name)
        if has is None:
            return None
        if not has:
            return f"{module}:{name}"
        module = f"{module}.{name}"
    return None


class _Reader(ast.NodeVisitor):
    """Collects the steps of one tree; ``line_of`` maps the tree's lines to the report's, ``ran`` says whether a
    top-level statement ran."""

    def __init__(
        self, aliases: dict[str, str], ran: dict[int, bool], offset: int = 0, whole_ran: bool | None = None
    ) -> None:
        self.steps: list[StaticStep] = []
        self.aliases = aliases  # local name -> what it stands for ("tq" -> "torch.ao.quantization")
        self.ran = ran  # top-level statement line -> ran without raising
        self.offset = offset
        self.whole_ran = whole_ran  # every statement of this tree has this ran value (a line read alone)
        self.function: str | None = None
        self.statement = 0
        self.assigned: dict[int, str] = {}  # id(call) -> the name it is assigned to
        self.constants: dict[str, str] = {}  # name -> the string last assigned to it (backend = "qnnpack")
        self.lines: list[str] = []

    # ---- helpers ----
    def resolve(self, node: ast.AST) -> str | None:
        name = dotted(node)
        if name is None:
            return None
        head, _, rest = name.partition(".")
        full = self.aliases.get(head, head)
        return f"{full}.{rest}" if rest else full

    def add(self, kind: str, node: ast.AST, **fields: str | None) -> None:
        line = getattr(node, "lineno", 1) + self.offset
        code = self.lines[line - self.offset - 1].strip() if 0 < line - self.offset <= len(self.lines) else ""
        if self.whole_ran is not None:
            ran: bool | None = self.whole_ran
        elif self.function is not None:
            ran = None
        else:
            ran = self.ran.get(self.statement, True)
        self.steps.append(
            StaticStep(
                kind,
                line,
                code,
                model=fields.get("model"),
                result=fields.get("result"),
                detail=fields.get("detail") or "",
                ran=ran,
                in_function=self.function,
            )
        )

    # ---- visiting ----
    def read(self, tree: ast.Module, source: str) -> None:
        self.lines = source.splitlines()
        for stmt in tree.body:
            self.statement = stmt.lineno
            for node in ast.walk(stmt):
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                    target = node.targets[0]
                    if isinstance(target, (ast.Name, ast.Attribute)):
                        self.assigned[id(node.value)] = dotted(target) or ""
            self.visit(stmt)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        outer, self.function = self.function, node.name
        self.generic_visit(node)
        self.function = outer

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        outer, self.function = self.function, node.name
        self.generic_visit(node)
        self.function = outer

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        outer, self.function = self.function, node.name
        eager_static = any(isinstance(n, ast.Call) and (dotted(n.func) or "").endswith(_STUBS) for n in ast.walk(node))
        if eager_static:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "forward":
                    self._float_ops(item, node.name)
        self.generic_visit(node)
        self.function = outer

    def _float_ops(self, forward: ast.FunctionDef, owner: str) -> None:
        for node in ast.walk(forward):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
                if not isinstance(node.left, ast.Constant) and not isinstance(node.right, ast.Constant):
                    self.add(R.FLOAT_OP, node, model=owner, detail="+")
            elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Add):
                if not isinstance(node.value, ast.Constant):
                    self.add(R.FLOAT_OP, node, model=owner, detail="+=")
            elif isinstance(node, ast.Call):
                name = self.resolve(node.func) or ""
                if name in ("torch.add", "torch.cat", "torch.concat", "torch.concatenate"):
                    self.add(R.FLOAT_OP, node, model=owner, detail=name)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            missing = _missing(alias.name) if alias.name.startswith("torch.") else None
            if missing:
                self.add(R.MISSING_NAME, node, detail=missing)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        for alias in node.names:
            if alias.name == "*":
                continue
            self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
            if module == "torch" or module.startswith("torch."):
                missing = _missing(f"{module}.{alias.name}")
                if missing:
                    self.add(R.MISSING_NAME, node, detail=missing)

    def string(self, node: ast.AST) -> str | None:
        """A string constant, or a name the text assigned one to."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return self.constants.get(node.id)
        return None

    def visit_Assign(self, node: ast.Assign) -> None:
        target = dotted(node.targets[0]) if node.targets else None
        value = self.string(node.value)
        if target is not None and self.resolve(node.targets[0]) == "torch.backends.quantized.engine":
            if value is not None:
                self.add(R.ENGINE, node, detail=value)
        elif isinstance(node.targets[0], ast.Name) and value is not None:
            self.constants[node.targets[0].id] = value
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        self._call(node)
        self.generic_visit(node)

    def _call(self, node: ast.Call) -> None:
        name = self.resolve(node.func) or ""
        last = name.rsplit(".", 1)[-1] or (node.func.attr if isinstance(node.func, ast.Attribute) else "")
        result = self.assigned.get(id(node))
        first = dotted(node.args[0]) if node.args else None
        if isinstance(node.func, ast.Attribute):
            owner = dotted(node.func.value)
            # `model = nn.Sequential(...).eval()`: the mode of the model the chain builds, bound to its variable
            moded = owner or (result if isinstance(node.func.value, ast.Call) else None)
            if last == "eval" and not node.args and moded:
                self.add(R.EVAL, node, model=moded)
                return
            if last == "train" and moded:
                off = node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value is False
                self.add(R.EVAL if off else R.TRAIN, node, model=moded)
                return
            if last == "cuda" and owner:
                self.add(R.TO_CUDA, node, model=owner, result=result)
                return
            if last == "to" and owner and _cuda_argument(node):
                self.add(R.TO_CUDA, node, model=owner, result=result)
                return
            if last == "fuse_model" and owner:
                self.add(R.FUSE, node, model=owner, detail="fuse_model")
                return
        if last in _PREPARE and first:
            self.add(R.PREPARE, node, model=first, result=result or first, detail=last)
        elif last == "quantize_" and first:
            given = (
                node.args[1]
                if len(node.args) > 1
                else next((k.value for k in node.keywords if k.arg == "config"), None)
            )
            config = dotted(given.func if isinstance(given, ast.Call) else given) if given is not None else None
            self.add(R.TORCHAO, node, model=first, detail=(config or "").rsplit(".", 1)[-1])
        elif last == "compile" and (name.startswith("torch.") or isinstance(node.func, ast.Attribute)):
            compiled = (
                first
                if name.startswith("torch.")
                else dotted(node.func.value)
                if isinstance(node.func, ast.Attribute)
                else None
            )
            self.add(R.COMPILE, node, model=compiled, result=result)
        elif last in _CONVERT and first:
            self.add(R.CONVERT, node, model=first, result=result or first, detail=last)
        elif last in ("fuse_modules", "fuse_modules_qat", "fuse_fx") and first:
            self.add(R.FUSE, node, model=first, result=result, detail=last)
        elif last == "quantize_dynamic" and first:
            spec = node.args[1] if len(node.args) > 1 else _keyword(node, "qconfig_spec")
            layers = _layer_types(spec) if spec is not None else []
            self.add(R.DYNAMIC, node, model=first, result=result or first, detail=",".join(layers))
        elif last in _QCONFIG and node.args and self.string(node.args[0]) is not None:
            self.add(R.QCONFIG, node, detail=self.string(node.args[0]))
        else:
            if name.startswith("torch."):
                missing = _missing(name)
                if missing:
                    self.add(R.MISSING_NAME, node, detail=missing)
            used = [dotted(a) for a in (*node.args, *(k.value for k in node.keywords))]
            callee = dotted(node.func)
            for model in {*(u for u in used if u), *([callee] if callee else [])}:
                self.add(R.USE, node, model=model)


def _keyword(node: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in node.keywords if k.arg == name), None)


def _cuda_argument(node: ast.Call) -> bool:
    values: Iterable[ast.AST] = [*node.args, *(k.value for k in node.keywords if k.arg == "device")]
    for value in values:
        text = _text(value)
        if "cuda" in text and "cpu" not in text:
            return True
    return False


def _layer_types(spec: ast.AST) -> list[str]:
    """The layer types of a quantize_dynamic spec ({nn.Linear, nn.LSTM}, or a dict keyed by them)."""
    elements: list[ast.expr] = []
    if isinstance(spec, (ast.Set, ast.List, ast.Tuple)):
        elements = list(spec.elts)
    elif isinstance(spec, ast.Dict):
        elements = [k for k in spec.keys if k is not None]
    return [(dotted(e) or _text(e)).rsplit(".", 1)[-1] for e in elements]


def read_steps(
    source: str,
    raised_lines: Iterable[int] = (),
    loose_lines: Iterable[tuple[int, str]] = (),
    file: str | None = None,
) -> StaticRead:
    """The steps of ``source`` (the report's script, with the report's line numbers; its statements that raised on
    ``raised_lines``) and of ``loose_lines`` ((line, code) of code that did not run, read one line at a time)."""
    raised = set(raised_lines)
    aliases: dict[str, str] = {}
    steps: list[StaticStep] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except (SyntaxError, ValueError):
        tree = None
    if tree is not None:
        ran = {stmt.lineno: stmt.lineno not in raised for stmt in tree.body}
        reader = _Reader(aliases, ran)
        reader.read(tree, source)
        steps += reader.steps
    for line, code in loose_lines:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                piece = ast.parse(code)
        except (SyntaxError, ValueError):
            continue
        reader = _Reader(aliases, {}, offset=line - 1, whole_ran=False)
        reader.read(piece, code)
        steps += reader.steps
    steps.sort(key=lambda s: s.line)
    return StaticRead(steps, file)
