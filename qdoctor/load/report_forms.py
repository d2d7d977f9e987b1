"""The forms a bug report's code takes besides Markdown fences, turned into blocks of lines for
qdoctor.load.report_text: reStructuredText (``.. code::``, ``.. code-block::``, ``::`` literal blocks), Markdown
indented blocks, Jupyter notebooks, HTML ``<pre><code>`` (a forum page saved from the browser) and a block cut
mid-statement. Pure text work: nothing runs here.
"""

from __future__ import annotations

import ast
import html
import json
import re
import textwrap
import warnings

# A block is (first, last, info): 0-based inclusive line range of its contents and its language ("" unlabelled).
Block = tuple[int, int, str]

_RST_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\.[ \t]+(?:code|code-block|sourcecode|ipython)::[ \t]*(?P<info>\S*)")
_RST_OPTION = re.compile(r"^[ \t]*:[\w-]+:")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _indented_body(lines: list[str], start: int, base: int) -> tuple[int, int] | None:
    """The lines from ``start`` indented deeper than ``base`` (blank lines inside kept): (first, last) or None."""
    i, n = start, len(lines)
    while i < n and not lines[i].strip():
        i += 1
    if i >= n or _indent(lines[i]) <= base:
        return None
    first = last = i
    while i < n and (not lines[i].strip() or _indent(lines[i]) > base):
        if lines[i].strip():
            last = i
        i += 1
    return first, last


def looks_like_rst(lines: list[str]) -> bool:
    return any(_RST_DIRECTIVE.match(line) for line in lines)


def rst_blocks(lines: list[str]) -> list[Block]:
    """The code of a reStructuredText document: ``.. code:: python`` / ``.. code-block::`` directives (their
    options skipped) and ``::`` literal blocks (unlabelled: kept only when their text is Python)."""
    blocks: list[Block] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        directive = _RST_DIRECTIVE.match(line)
        literal = not directive and line.rstrip().endswith("::") and not line.lstrip().startswith("..")
        if not directive and not literal:
            i += 1
            continue
        start = i + 1
        if directive:
            while start < n and _RST_OPTION.match(lines[start]):
                start += 1
        body = _indented_body(lines, start, _indent(line))
        if body is None:
            i += 1
            continue
        info = directive.group("info").lower() if directive else ""
        blocks.append((body[0], body[1], info))
        i = body[1] + 1
    return blocks


def indented_blocks(lines: list[str], taken: set[int]) -> list[Block]:
    """Markdown indented code blocks (four spaces or a tab after a blank line) outside the fenced blocks
    (``taken``), unlabelled: kept only when their text is Python."""
    blocks: list[Block] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        starts = (
            i not in taken
            and line.strip()
            and (line.startswith("    ") or line.startswith("\t"))
            and (i == 0 or not lines[i - 1].strip())
            and not line.lstrip().startswith(("- ", "* ", "+ "))
        )
        if not starts:
            i += 1
            continue
        last = i
        j = i
        while j < n and j not in taken and (not lines[j].strip() or lines[j].startswith(("    ", "\t"))):
            if lines[j].strip():
                last = j
            j += 1
        blocks.append((i, last, ""))
        i = last + 1
    return blocks


def notebook_text(text: str) -> str | None:
    """A Jupyter notebook as Markdown: code cells in ```python fences, Markdown cells as they are, and the error
    outputs (tracebacks) as text. None when ``text`` is not a notebook."""
    if not text.lstrip().startswith("{") or '"cells"' not in text:
        return None
    try:
        notebook = json.loads(text)
    except ValueError:
        return None
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        return None
    out: list[str] = []
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        if cell.get("cell_type") == "code":
            # IPython magics and shell escapes are not Python: left as comments
            code = "\n".join(
                f"# {line}" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
            )
            out += ["```python", code, "```", ""]
            for output in cell.get("outputs") or []:
                if isinstance(output, dict) and output.get("output_type") == "error":
                    trace = "\n".join(_ANSI.sub("", str(t)) for t in output.get("traceback") or [])
                    out += [
                        "Traceback (most recent call last):",
                        trace,
                        f"{output.get('ename', 'Error')}: {output.get('evalue', '')}",
                        "",
                    ]
        else:
            out += [source, ""]
    return "\n".join(out)


_PRE = re.compile(r"<pre\b[^>]*>\s*(?:<code\b(?P<attrs>[^>]*)>)?(?P<body>.*?)(?:</code>\s*)?</pre>", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")


def html_text(text: str) -> str | None:
    """An HTML page (a forum thread saved from the browser) as Markdown: each ``<pre>``/``<pre><code>`` a fenced
    block, the rest as text without tags, entities unescaped. None when ``text`` has no ``<pre>``."""
    if not re.search(r"<pre\b", text, re.I):
        return None
    parts: list[str] = []
    position = 0
    for match in _PRE.finditer(text):
        parts.append(_plain(text[position : match.start()]))
        attrs = match.group("attrs") or ""
        lang = re.search(r"(?:language|lang)-([\w+-]+)", attrs)
        info = lang.group(1) if lang else ""
        body = html.unescape(_TAG.sub("", match.group("body")))
        parts.append(f"\n```{info}\n{body.strip(chr(10))}\n```\n")
        position = match.end()
    parts.append(_plain(text[position:]))
    return "".join(parts)


def _plain(fragment: str) -> str:
    fragment = re.sub(r"<(script|style)\b.*?</\1>", "", fragment, flags=re.S | re.I)
    fragment = re.sub(r"<br\s*/?>|</p>|</div>|</li>|</h\d>", "\n", fragment, flags=re.I)
    return html.unescape(_TAG.sub("", fragment))


def compiles(text: str) -> bool:
    """Parses and compiles (``return`` outside a function parses but does not compile). Parsing alone first: most
    candidate texts of a report are prose and fail there, cheaply."""
    if not text.strip():
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in pasted strings
            compile(text, "<report>", "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
            compile(text, "<report>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def complete_prefix(body: list[str]) -> int | None:
    """A block cut mid-statement (a page stored up to ``with``): the index of its last line that ends a complete
    statement, so that ``body[: index + 1]`` compiles; None when no prefix does."""
    for end in range(len(body) - 1, -1, -1):
        if not body[end].strip():
            continue
        if compiles(textwrap.dedent("\n".join(body[: end + 1]))):
            return end
    return None


def statement_lines(text: str) -> list[tuple[int, str]]:
    """Lines of ``text`` (1-based) that are a whole Python statement by themselves: what can still be read of code
    that lost its indentation or does not parse as a whole (``torch.quantization.prepare(model, inplace=True)``)."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.endswith(":"):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(stripped)
        except (SyntaxError, ValueError):
            continue
        if len(tree.body) == 1 and isinstance(tree.body[0], (ast.Expr, ast.Assign, ast.AugAssign, ast.ImportFrom)):
            found.append((number, stripped))
    return found
