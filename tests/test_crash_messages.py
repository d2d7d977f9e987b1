"""A crash message is read in one place: qdoctor.diagnose.crash_causes (with flow_causes, the flow-step half of the
same table). Rules consume its classifications (``classify``, ``backend_error``, the causes they own); a regex or a
substring test of their own drifts from the table, and then the owning rule goes quiet while QD014 stays quiet too.

The test reads every module of qdoctor with ``ast``: every pattern given to ``re`` and every string tested with ``in``
is tried on the messages of the crash corpus (fixtures/crashes/, the errors people report). One that recognizes a
message outside the table fails.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "qdoctor"
CORPUS = PACKAGE.parent / "fixtures" / "crashes"

THE_TABLE = {"diagnose/crash_causes.py", "diagnose/flow_causes.py"}
# Modules that read an error message for another question than "what caused this crash". Each says which.
OTHER_QUESTIONS = {
    # Do the example inputs fit the model? A wrong shape is the user's input, not a quantization defect: "could not
    # check" (exit 2) before anything is diagnosed. load/ sits below diagnose/ and cannot ask the crash table.
    "load/input_fit.py",
}
_RE_FUNCTIONS = {"compile", "search", "match", "fullmatch", "finditer", "findall", "sub", "subn", "split"}
# A message is a sentence: a pattern reads one when its literal text holds two words in a row ("Could not run",
# "is not supported"); identifiers ("per_tensor", "quantized") and character classes match op names and paths too.
_TWO_WORDS = re.compile(r"[A-Za-z]{2,}'? [A-Za-z']{2,}")


def literal_runs(pattern: str) -> list[str]:
    """The runs of literal text in a regular expression (what any match of it must contain, or may)."""
    runs, run, i = [], "", 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            escaped = pattern[i + 1]
            if escaped.isalnum():  # \w \d \s \b \1: a class or an anchor, not a literal
                runs.append(run)
                run = ""
            else:
                run += escaped
            i += 2
            continue
        if char in "*+?{":
            run = run[:-1]  # the quantified character may be absent or repeated
            runs.append(run)
            run = ""
            if char == "{":
                i = pattern.find("}", i) if "}" in pattern[i:] else len(pattern)
        elif char == "[":
            runs.append(run)
            run = ""
            i += 2 if pattern[i + 1 : i + 2] == "]" else 1
            while i < len(pattern) and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
        elif char in "()|^$.":
            runs.append(run)
            run = ""
            if pattern[i : i + 3] == "(?P" and pattern[i + 3 : i + 4] == "<":
                i = pattern.find(">", i)
            elif pattern[i : i + 2] == "(?":
                i += 2
        else:
            run += char
        i += 1
    return [r for r in [*runs, run] if r]


def reads_a_sentence(text: str) -> bool:
    return _TWO_WORDS.search(text) is not None


def corpus_messages() -> list[str]:
    found = []
    for path in sorted(CORPUS.glob("*.py")):
        match = re.search(r"^# message: (.+)$", path.read_text(), re.M)
        assert match, f"{path.name} has no `# message:` header"
        found.append(match.group(1))
    return found


def _module_strings(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level names bound to an expression (patterns are often named once and used later)."""
    bound: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            bound[node.targets[0].id] = node.value
    return bound


def _text(node: ast.expr, bound: dict[str, ast.expr], depth: int = 0) -> str | None:
    """The string a pattern expression stands for, when it can be known without running the module."""
    if depth > 5:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left, bound, depth + 1), _text(node.right, bound, depth + 1)
        return left + right if left is not None and right is not None else None
    if isinstance(node, ast.Name) and node.id in bound:
        return _text(bound[node.id], bound, depth + 1)
    if isinstance(node, ast.Call) and _is_re_call(node) and node.args:  # a name bound to re.compile(...)
        return _text(node.args[0], bound, depth + 1)
    return None


def _is_re_call(node: ast.Call) -> bool:
    func = node.func
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == "re"
        and func.attr in _RE_FUNCTIONS
    )


def message_readers(source: str, messages: list[str]) -> list[tuple[int, str]]:
    """(line, pattern or substring) of every regex or `in` test in ``source`` that recognizes one of ``messages``."""
    tree = ast.parse(source)
    bound = _module_strings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_re_call(node) and node.args:
            pattern = _text(node.args[0], bound)
            if pattern is None:
                continue
            try:
                compiled = re.compile(pattern, re.I)
            except re.error:
                continue
            sentence = any(reads_a_sentence(run) for run in literal_runs(pattern))
            if sentence and any(compiled.search(m) for m in messages):
                found.append((node.lineno, pattern))
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            text = _text(node.left, bound)
            if text is not None and reads_a_sentence(text) and any(text in m for m in messages):
                found.append((node.lineno, text))
    return found


def test_no_crash_message_is_read_outside_the_table():
    messages = corpus_messages()
    readers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name in THE_TABLE or name in OTHER_QUESTIONS:
            continue
        readers += [f"qdoctor/{name}:{line}: {text!r}" for line, text in message_readers(path.read_text(), messages)]
    assert not readers, (
        "crash messages read outside qdoctor.diagnose.crash_causes (use its classify / backend_error):\n"
        + "\n".join(readers)
    )


def test_the_table_reads_the_corpus():
    """The scan sees the table's own patterns: the same check on crash_causes finds them."""
    messages = corpus_messages()
    lines = message_readers((PACKAGE / "diagnose" / "crash_causes.py").read_text(), messages)
    assert any("Could not run" in text for _, text in lines)
    assert any("NoQEngine" in text for _, text in lines)


def test_the_scan_sees_a_copied_pattern_and_a_substring_test():
    copied = (
        "import re\n"
        "_FLOAT_INTO_INT8 = re.compile(r\"Could not run '(quantized::[\\w.]+)' with arguments from the 'CPU' backend\")\n"
        "_ENGINE = r'quantized engine (\\w+) is not supported'\n"
        "def f(message):\n"
        "    return _FLOAT_INTO_INT8.search(message) or re.search(_ENGINE, message) or 'Fusion only for eval' in message\n"
    )
    messages = corpus_messages()
    assert [line for line, _ in message_readers(copied, messages)] == [2, 5, 5]


def test_the_exceptions_are_still_needed():
    """An entry of OTHER_QUESTIONS stays only while its module reads a message of the corpus."""
    messages = corpus_messages()
    stale = [name for name in OTHER_QUESTIONS if not message_readers((PACKAGE / name).read_text(), messages)]
    assert not stale, f"no longer read crash messages, remove from OTHER_QUESTIONS: {stale}"


def test_literal_runs():
    assert literal_runs(r"Could not run '(?P<op>[\w:.]+)' with arguments") == ["Could not run '", "' with arguments"]
    assert literal_runs(r"quantized engine \w+ is not supported|NoQEngine") == [
        "quantized engine ",
        " is not supported",
        "NoQEngine",
    ]
    assert literal_runs(r"([^.()]+)\(([^()]*)\)") == ["(", ")"]


def private_uses(source: str, module: str = "qdoctor.diagnose.crash_causes") -> list[tuple[int, str]]:
    """(line, name) of every private name of ``module`` that ``source`` reads (``crashes._BACKEND``)."""
    tree = ast.parse(source)
    package, _, last = module.rpartition(".")
    aliases = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == package:
            aliases |= {a.asname or a.name for a in node.names if a.name == last}
        elif isinstance(node, ast.ImportFrom) and node.module == module:
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Import):
            aliases |= {a.asname for a in node.names if a.name == module and a.asname}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            if node.attr.startswith("_"):
                found.append((node.lineno, node.attr))
    return found


def test_no_rule_reads_the_tables_private_patterns():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for table in ("qdoctor.diagnose.crash_causes", "qdoctor.diagnose.flow_causes"):
            found += [
                f"{path.relative_to(PACKAGE.parent)}:{line}: {name}"
                for line, name in private_uses(path.read_text(), table)
            ]
    assert not found, "private names of the crash table read elsewhere (give it a public function):\n" + "\n".join(
        found
    )


def test_the_private_scan_sees_a_private_read():
    source = "from qdoctor.diagnose import crash_causes as crashes\nx = crashes._BACKEND.search('m')\n"
    assert private_uses(source) == [(2, "_BACKEND")]
