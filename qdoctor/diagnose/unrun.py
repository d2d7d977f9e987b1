"""What a statement that raised left undone: the quantization steps written after the raising line inside the same
top-level statement (a training loop that raised before its convert). Pure: the script's text read with ``ast``."""

from __future__ import annotations

import ast

from qdoctor.facts import CrashInfo, Facts, SourceLocation
from qdoctor.facts.report import CONVERT_FUNCTIONS


def _called_name(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def unrun_converts(facts: Facts, crash: CrashInfo) -> list[SourceLocation]:
    """The convert calls of the script's top-level statement that raised at ``crash.line``, on its later lines: the
    script meant to convert there and never got to (a statement that raised is abandoned; the next ones still run)."""
    text, file, line = facts.target.script_text, facts.target.file, crash.line
    if crash.phase != "load" or not text or not file or line is None:
        return []
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    statement = next((s for s in tree.body if s.lineno <= line <= (s.end_lineno or s.lineno)), None)
    if statement is None or isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return []
    lines = text.splitlines()
    return [
        SourceLocation(file, node.lineno, lines[node.lineno - 1].strip())
        for node in ast.walk(statement)
        if isinstance(node, ast.Call) and node.lineno > line and _called_name(node) in CONVERT_FUNCTIONS
    ]
