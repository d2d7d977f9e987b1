"""Read a bug report as it is written: the Python in a Markdown issue body, a forum post, a blog article, a
reStructuredText tutorial, a Jupyter notebook or an HTML page saved from the browser.

A Markdown report's fenced blocks (```python, ```py, ```pycon, and unlabelled fences whose text parses as Python) and
its indented blocks run in order as one script; a reStructuredText report runs its ``.. code::`` / ``.. code-block::``
directives and ``::`` literal blocks; a notebook its code cells, an HTML page its ``<pre><code>`` blocks (both read
as Markdown first: qdoctor.load.report_forms); a text without any of these yields its runs of lines that parse as
Python (a ``>>>`` session without its prompts and output). A block cut mid-statement (a page stored up to ``with``)
runs up to its last complete statement, with a note. The errors the report quotes are read too
(qdoctor.load.report_tracebacks). The script keeps the report's line numbers: every line that does not run is left
blank, so a finding's line is the report's line.

Pure text work: no torch, nothing runs here.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass, field

from qdoctor.errors import TargetError
from qdoctor.facts import CrashInfo
from qdoctor.load.report_forms import (
    compiles,
    complete_prefix,
    html_text,
    indented_blocks,
    looks_like_rst,
    notebook_text,
    rst_blocks,
)
from qdoctor.load.report_indent import code_part as _code_part
from qdoctor.load.report_indent import reindent
from qdoctor.load.report_tracebacks import report_crashes

REPORT_SUFFIXES = (".md", ".markdown", ".txt", ".text", ".rst", ".issue", ".ipynb", ".html", ".htm")
MAX_REPORT_LINES = 20_000
# How far past the last line that parsed a run is still extended (a call or a list spread over many lines).
_LOOKAHEAD = 40
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)[^`]*$")
_PYTHON_INFO = {"python", "py", "python3", "py3", "pycon", "ipython", "python-repl", "pytorch"}
_PROMPT = re.compile(r"^(>>>|\.\.\.)( |$)")
_INLINE_LINE = re.compile(r"^\s*`([^`]+)`\s*$")  # a line that is one inline code span and nothing else
_OTHER_LANGUAGES = {
    "bash",
    "sh",
    "shell",
    "console",
    "text",
    "txt",
    "output",
    "json",
    "yaml",
    "yml",
    "toml",
    "diff",
    "c",
    "cpp",
    "c++",
    "cuda",
    "log",
    "ini",
    "powershell",
    "cmd",
    "plaintext",
}


@dataclass
class ExtractedScript:
    """The report's Python as one script with the report's line numbering (blank where nothing runs)."""

    source: str
    kind: str  # "markdown", "rst", "notebook", "html" or "text"
    ran: list[tuple[int, int]]  # 1-based inclusive ranges of report lines that run
    skipped: list[str] = field(default_factory=list)
    crashes: list[CrashInfo] = field(
        default_factory=list
    )  # the errors the report quotes (qdoctor.load.report_tracebacks)
    text: str = ""  # the report as read (a notebook or an HTML page as Markdown), for the static pass
    # (line, code) of the lines of code blocks that did not run (cut, lost indentation): read without running them
    unrun_code: list[tuple[int, str]] = field(default_factory=list)
    reindented: list[str] = field(default_factory=list)  # the lines that lost their indentation, given it back by guess
    guessed_lines: set[int] = field(default_factory=set)  # those lines (1-based): what they raise is qdoctor's guess


def is_report(name: str) -> bool:
    """A target that is a report (Markdown or text), not a Python script: by its suffix, or stdin ("-")."""
    return name == "-" or name.lower().endswith(REPORT_SUFFIXES)


def _strip_prompts(lines: list[str]) -> list[str]:
    """A pasted REPL session (``>>> x = 1``): its prompts removed, its output lines dropped."""
    if not any(_PROMPT.match(line) for line in lines):
        return lines
    return [_PROMPT.sub("", line) if _PROMPT.match(line) else "" for line in lines]


def _strip_magics(lines: list[str]) -> list[str]:
    """A notebook cell's shell escapes and magics (``!pip install ...``, ``%timeit f()``): never Python, blanked so
    that the imports around them still run."""
    return ["" if line.lstrip().startswith(("!", "%")) else line for line in lines]


def _blank_inert(lines: list[str], first: int, last: int, prose: bool = False) -> tuple[int, int] | None:
    """Lines ``first..last`` (0-based, inclusive) parse together. Blank the top-level statements that do nothing but
    could raise (a bare word of prose, ``0/2000``, a title with a colon that parses as an annotation: no call in
    them); return the range from the first to the last statement left, None when none is. ``prose``: the run was
    found among prose, where a line that names a non-ASCII identifier (``可以有更高的精度(因为...)``) is a sentence that
    happens to parse, not code: blanked too."""
    chunk = "\n".join(lines[first : last + 1])
    tree = ast.parse(chunk)
    kept: tuple[int, int] | None = None
    for stmt in tree.body:
        start, end = first + stmt.lineno - 1, first + (stmt.end_lineno or stmt.lineno) - 1
        calls = any(isinstance(node, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom)) for node in ast.walk(stmt))
        inert = (isinstance(stmt, ast.Expr) or (isinstance(stmt, ast.AnnAssign) and stmt.value is None)) and not calls
        inert = inert or (prose and _names_non_ascii(stmt))
        if inert:
            for i in range(start, end + 1):
                lines[i] = ""
        else:
            kept = (kept[0] if kept else start, end)
    return kept


def _names_non_ascii(stmt: ast.stmt) -> bool:
    return any(isinstance(node, ast.Name) and not node.id.isascii() for node in ast.walk(stmt))


def _bound_names(lines: list[str], first: int, last: int) -> set[str]:
    """The names a run binds at top level: assignment targets, imports, defs (``model.qconfig = ...`` binds none)."""
    tree = ast.parse("\n".join(lines[first : last + 1]))
    names: set[str] = set()

    def targets(node: ast.expr) -> None:
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for element in node.elts:
                targets(element)
        elif isinstance(node, ast.Starred):
            targets(node.value)

    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(stmt.name)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in stmt.names)
        elif isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                targets(target)
        elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
            targets(stmt.target)
    return names


def _text_runs(
    lines: list[str], guessed: list[tuple[int, int, str, set[int]]]
) -> tuple[list[tuple[int, int]], list[str]]:
    """The runs of lines that parse as Python, longest first from each start (0-based inclusive ranges). A block
    whose indentation the paste lost gets it back by guess (qdoctor.load.report_indent) where the guess parses: the
    lines are re-indented in ``lines`` and their 1-based range and header appended to ``guessed``."""
    runs: list[tuple[int, int]] = []
    skipped: list[str] = []
    i, n = 0, len(lines)
    while i < n:
        if not lines[i].strip() or lines[i].lstrip().startswith("#"):
            i += 1
            continue
        best = -1
        j, misses = i, 0
        while j < n and misses < _LOOKAHEAD:
            if compiles("\n".join(lines[i : j + 1])):
                best, misses = j, 0
            else:
                misses += 1
            j += 1
        if best < 0:
            header = lines[i].rstrip()
            if header.endswith(":") and compiles(header.strip() + "\n    pass") and i + 1 < n:
                nxt = lines[i + 1]
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= len(header) - len(header.lstrip()):
                    last = _reindented(lines, i)
                    if last is not None:
                        guessed.append((i + 1, last + 1, header.strip()[:60], _guessed(lines, i, last)))
                        continue  # the lines now parse: read again from the header
                    end = _lost_block_end(lines, i)
                    skipped.append(
                        f"lines {i + 1}-{end + 1}: `{header.strip()[:60]}` lost the indentation of its block in the "
                        "paste: not run (paste it with its indentation)"
                    )
                    i = end + 1
                    continue
            i += 1
            continue
        runs.append((i, best))
        i = best + 1
    return runs, skipped


def _reindented(lines: list[str], header: int) -> int | None:
    """Re-indent the lines from ``header`` by guess, in place, as far as they then parse with the header's block
    (its body at least); the last line re-indented, None (``lines`` untouched) when the guess does not parse."""
    window = lines[header : header + 4 * _LOOKAHEAD]
    guess = reindent([line.strip() for line in window])
    best, misses = -1, 0
    for k in range(1, len(guess)):
        if misses >= _LOOKAHEAD:
            break
        if guess[k].strip() and compiles("\n".join(guess[: k + 1])):
            best, misses = k, 0
        else:
            misses += 1
    if best < 0:
        return None
    lines[header : header + best + 1] = guess[: best + 1]
    return header + best


def _guessed(lines: list[str], first: int, last: int) -> set[int]:
    """The 1-based lines whose place was guessed among ``first..last`` (0-based): those put in a block, and the
    compound statements they were put in (a statement left at the margin is where the paste had it)."""
    return {
        i + 1
        for i in range(first, last + 1)
        if lines[i].strip() and (lines[i].startswith(" ") or _code_part(lines[i]).endswith(":"))
    }


def _lost_block_end(lines: list[str], header: int) -> int:
    """The last line of a block whose indentation the paste lost: a function's first top-level ``return``, else the
    line before the next blank line (where the block ends cannot be told for sure: those lines are not run)."""
    is_def = re.match(r"\s*(async\s+)?def\s", lines[header]) is not None
    limit = min(len(lines), header + 1 + 2 * _LOOKAHEAD)
    if is_def:
        for k in range(header + 1, limit):
            if re.match(r"\s*return\b", lines[k]):
                return k
    k = header + 1
    while k < limit and lines[k].strip():
        k += 1
    return k - 1


def _drop_variants(lines: list[str], runs: list[tuple[int, int]], skipped: list[str]) -> list[tuple[int, int]]:
    """A later run that only re-binds names earlier runs bound is a variant of the code above (an article's
    "fixed code", an alternative): it is listed, not run, so the script stays the one the report reproduces."""
    bound: set[str] = set()
    kept: list[tuple[int, int]] = []
    for first, last in runs:
        names = _bound_names(lines, first, last)
        if kept and names and names <= bound:
            shown = ", ".join(sorted(names))
            skipped.append(
                f"lines {first + 1}-{last + 1}: re-bind {shown} from the code above (a variant of it, such as "
                "a proposed fix): not run"
            )
            continue
        bound |= names
        kept.append((first, last))
    return kept


def _fenced_blocks(lines: list[str]) -> list[tuple[int, int, str]] | None:
    """The report's fenced blocks as (first, last, info) 0-based inclusive ranges of their contents; None when it
    has no fences."""
    blocks: list[tuple[int, int, str]] = []
    i, n = 0, len(lines)
    found = False
    while i < n:
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        if match.group("fence")[0] == "~" and (
            len(match.group("indent")) > 3 or (i > 0 and lines[i - 1].strip() and not match.group("info"))
        ):
            i += 1  # a row of tildes under a title (reStructuredText) or a traceback's marker: not a fence
            continue
        found = True
        fence = match.group("fence")
        info = match.group("info").lower().strip("{}.")
        j = i + 1
        while j < n and not re.match(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[j]):
            j += 1
        if j > i + 1:
            blocks.append((i + 1, j - 1, info))
        i = j + 1
    return blocks if found else None


def _dedented(lines: list[str], first: int, last: int) -> list[str]:
    return textwrap.dedent("\n".join(lines[first : last + 1])).split("\n")


def _report_lines(text: str, name: str) -> tuple[list[str], str | None]:
    """The report's lines, a notebook or an HTML page first turned into Markdown; and the form it had."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    notebook = notebook_text(text) if name.lower().endswith(".ipynb") or text.lstrip().startswith("{") else None
    if notebook is not None:
        return notebook.split("\n"), "notebook"
    page = html_text(text)
    if page is not None:
        return page.split("\n"), "html"
    return lines, None


def _blocks(lines: list[str], name: str) -> tuple[list[tuple[int, int, str]] | None, str]:
    """The code blocks of a Markdown or reStructuredText report (None: neither, read it as text) and its kind."""
    fenced = _fenced_blocks(lines)
    if name.lower().endswith(".rst") or (fenced is None and looks_like_rst(lines)):
        return rst_blocks(lines), "rst"
    if fenced is None:
        return None, "text"
    taken = {i for first, last, _ in fenced for i in range(first - 1, last + 2)}
    return sorted(fenced + indented_blocks(lines, taken)), "markdown"


def extract(text: str, name: str) -> ExtractedScript:
    """The Python of a report and the errors it quotes. Raises TargetError (one line) when it holds neither."""
    if "\x00" in text:
        raise TargetError(f"{name}: binary data, not a report or a script")
    if not text.strip():
        raise TargetError(f"{name}: the report is empty")
    lines, form = _report_lines(text, name)
    crashes = report_crashes("\n".join(lines))  # a notebook's error outputs are in its Markdown form
    if len(lines) > MAX_REPORT_LINES:
        raise TargetError(f"{name}: {len(lines)} lines; a report of at most {MAX_REPORT_LINES} lines is read")
    out = [""] * len(lines)
    skipped: list[str] = []
    guessed: list[tuple[int, int, str, set[int]]] = []
    blocks, kind = _blocks(lines, name)
    ranges: list[tuple[int, int]] = []
    # the blocks taken for Python (run, cut, or labelled python): only their lines that did not run are read
    # statically, never those of an output or a traceback block (whose echoed source lines look like code)
    python_blocks: list[tuple[int, int]] = []
    if blocks is not None:
        for first, last, info in blocks:
            body = _strip_magics(_strip_prompts(_dedented(lines, first, last)))
            labelled = info in _PYTHON_INFO
            if info and not labelled:
                if info not in _OTHER_LANGUAGES:
                    skipped.append(f"lines {first + 1}-{last + 1}: a {info} block: not run")
                continue
            if not compiles("\n".join(body)):
                looks = labelled or _looks_like_code(body)
                if looks:
                    python_blocks.append((first, last))
                end = complete_prefix(body) if looks else None
                if end is None:
                    if labelled:
                        skipped.append(f"lines {first + 1}-{last + 1}: a python block that does not parse: not run")
                    continue  # an unlabelled block that is not Python (output, a traceback, a shell command)
                skipped.append(
                    f"lines {first + end + 2}-{last + 1}: the block is cut mid-statement (or does not parse from "
                    f"there): ran up to line {first + end + 1}, its last complete statement"
                )
                body, last = body[: end + 1], first + end
            out[first : last + 1] = body
            ranges.append((first, last))
            python_blocks.append((first, last))
        for first, last in ranges:
            _blank_inert(out, first, last)  # a bare expression (a notebook's display of a value) does nothing here
    else:
        raw = _session_lines(_inline_code_lines([line.rstrip() for line in lines]))
        if compiles("\n".join(raw)):  # a script saved as text (a Sphinx-Gallery tutorial): all of it, as one run
            runs: list[tuple[int, int]] = [(0, len(raw) - 1)]
        else:
            runs, skipped = _text_runs(raw, guessed)
        for first, last in runs:
            out[first : last + 1] = _dedented(raw, first, last)
        kept = [r for r in (_blank_inert(out, first, last, prose=True) for first, last in runs) if r is not None]
        ranges = _drop_variants(out, kept, skipped)
        ran_lines = {i for first, last in ranges for i in range(first, last + 1)}
        out = [line if i in ran_lines else "" for i, line in enumerate(out)]
    ranges = _merge(out, lines, ranges)
    if not ranges and not crashes:
        raise TargetError(
            f"{name}: no Python found in the report and no traceback (no code block, no lines that parse as Python, "
            "no error message)"
        )
    source = "\n".join(out) + "\n"
    if ranges and not compiles(source):  # blocks that parse alone but not together (an unclosed string across fences)
        raise TargetError(f"{name}: the report's Python blocks do not parse together as one script")
    unrun = [
        (i + 1, lines[i].strip())
        for first, last in sorted(set(python_blocks))
        for i in range(first, last + 1)
        if lines[i].strip() and not out[i].strip()
    ]
    reindented = [
        f"lines {a}-{b}: `{header}` and the lines after it lost their indentation in the paste: re-indented by guess "
        "(a `:` opens a block, `return` ends its function); what they raise is not diagnosed"
        for a, b, header, _ in guessed
    ]
    guessed_lines = {line for *_, placed in guessed for line in placed}
    return ExtractedScript(
        source,
        form or kind,
        [(a + 1, b + 1) for a, b in ranges],
        skipped,
        crashes,
        "\n".join(lines),
        unrun,
        reindented,
        guessed_lines,
    )


def _looks_like_code(body: list[str]) -> bool:
    """An unlabelled block that opens like a script (imports, definitions, assignments): worth running up to where
    it breaks. A lone call or value (``tensor([1., 1.])``, an output) is not."""
    head = [line.strip() for line in body if line.strip() and not line.strip().startswith("#")][:3]
    return bool(head) and all(
        re.match(r"(import |from \w[\w.]* import |def |class |@|\w[\w.]*\s*=[^=])", line) for line in head
    )


def _inline_code_lines(lines: list[str]) -> list[str]:
    """A text whose code was written one inline code span a line (`` `model.eval()` ``, a GitHub issue typed without
    a fence): each such line is that line of code. Other lines as they are."""
    return [match.group(1) if (match := _INLINE_LINE.match(line)) else line for line in lines]


def _session_lines(lines: list[str]) -> list[str]:
    """A console session pasted as text (``>>> x = f()`` / ``... ``): its prompts removed and its output lines (those
    after a prompt line, up to the next prompt or blank line) blanked; other lines as they are."""
    if not any(_PROMPT.match(line) for line in lines):
        return lines
    out = list(lines)
    in_session = False
    for i, line in enumerate(lines):
        if _PROMPT.match(line):
            out[i] = _PROMPT.sub("", line)
            in_session = True
        elif in_session and line.strip():
            out[i] = ""
        else:
            in_session = False
    return out


def _merge(lines: list[str], original: list[str], ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Ranges trimmed to the lines that run and merged where only lines blank in the report separate them."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        while first <= last and not lines[first].strip():
            first += 1
        while last >= first and not lines[last].strip():
            last -= 1
        if first > last:
            continue
        if merged and all(not original[k].strip() for k in range(merged[-1][1] + 1, first)):
            merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return merged


def describe_ranges(ranges: list[tuple[int, int]]) -> str:
    """ "3-20, 25-40" for the report note."""
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges)
