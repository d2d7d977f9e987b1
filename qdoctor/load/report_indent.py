"""Give back the indentation a paste lost: a forum post or a blog article whose code was flattened to column 0
(``class M(nn.Module):`` then ``def __init__(self):`` then ``super().__init__()``, all at the margin).

The depth of each line is guessed from what Python itself says about blocks: a line that ends with ``:`` opens one
(the next line is one deeper), ``return`` / ``raise`` / ``pass`` / ``break`` / ``continue`` close the one they are in,
``elif`` / ``else`` / ``except`` / ``finally`` go back to the header they continue, a ``def`` whose first parameter is
``self`` or ``cls`` is a method of the class around it, ``return`` ends the function it is in, a comment after a loop's body ends the loop (a flattened
calibration loop is followed by ``# convert`` and the next step), and ``import`` / ``class`` / a decorator / any other ``def``
start again at the margin; a statement after a class's last method is back at the margin too. Lines inside open
brackets continue their statement. The guess is only used where the lines then parse (qdoctor.load.report_text), and
the report says which lines were re-indented. Pure text work: nothing runs here.
"""

from __future__ import annotations

import re

_STEP = "    "
_CONTINUES = {
    "elif": ("if", "elif"),
    "else": ("if", "elif", "for", "while", "try", "except"),
    "except": ("try", "except"),
}
_CONTINUES["finally"] = ("try", "except", "else")
_LOOPS = ("for", "while", "with")
_CLOSERS = ("return", "raise", "pass", "break", "continue")
_MARGIN = re.compile(r"(import |from \S+ import |class |@|if __name__\b)")
_DEF = re.compile(r"(?:async\s+)?def\s+\w+\s*\(\s*(?P<first>\w*)")
_WORD = re.compile(r"[A-Za-z_]+")


def code_part(line: str) -> str:
    """The line without its trailing comment (a ``#`` outside quotes)."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#":
            return line[:i].rstrip()
    return line.rstrip()


def _bracket_change(code: str) -> int:
    """How many brackets the line opens minus those it closes (strings skipped)."""
    change, quote = 0, ""
    for char in code:
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([{":
            change += 1
        elif char in ")]}":
            change -= 1
    return change


def reindent(lines: list[str]) -> list[str]:
    """``lines`` (stripped of their indentation by the paste) with the indentation guessed back."""
    out: list[str] = []
    # the open blocks: (the header's first word, the header's depth); a block's body is one deeper than its header
    blocks: list[tuple[str, int]] = []
    depth = 0  # the depth of the next statement
    brackets = 0  # open brackets: the line continues a statement
    statement = ("", "", False)  # the statement under way: its first word, its last code line, a def header
    method_closed = False  # the last statement closed a method of the innermost class
    opened = False  # the last statement opened a block (its body has no statement yet)
    for raw in lines:
        line = raw.strip()
        if not line:
            out.append("")
            continue
        if brackets > 0:
            out.append(_STEP * (depth + 1) + line)
            brackets = max(0, brackets + _bracket_change(code_part(line)))
            if brackets == 0:
                first_word, _, is_def = statement
                depth, blocks, method_closed, opened = _ended(first_word, code_part(line), is_def, depth, blocks)
            continue
        if line.startswith("#"):
            while blocks and blocks[-1][0] in _LOOPS and not opened:
                depth = blocks.pop()[1]  # a comment after a loop's body: the next step of the script, not of the loop
            out.append(_STEP * depth + line)
            continue
        code = code_part(line)
        match = _WORD.match(code)
        word = match.group(0) if match else ""
        method = _DEF.match(code)
        classes = [level for kind, level in blocks if kind == "class"]
        if word in _CONTINUES:
            headers = [level for kind, level in blocks if kind in _CONTINUES[word]]
            depth = headers[-1] if headers else max(0, depth - 1)
        elif _MARGIN.match(code) or (method and method.group("first") not in ("self", "cls")):
            depth = 0
        elif method and classes:
            depth = classes[-1] + 1
        elif method_closed and classes and depth == classes[-1] + 1:
            depth = classes[-1]  # a statement after the class's last method: back outside the class
        blocks = [(kind, level) for kind, level in blocks if level < depth]
        out.append(_STEP * depth + line)
        statement = (word, code, method is not None)
        brackets = max(0, _bracket_change(code))
        if brackets == 0:
            depth, blocks, method_closed, opened = _ended(word, code, method is not None, depth, blocks)
    return out


def _ended(
    word: str, code: str, method: bool, depth: int, blocks: list[tuple[str, int]]
) -> tuple[int, list[tuple[str, int]], bool, bool]:
    """After a statement that starts with ``word`` and ends with ``code``: the depth of the next one, the blocks still
    open, whether it closed a method of a class, whether it opened a block."""
    if code.endswith(":"):
        return depth + 1, [*blocks, ("def" if method else word, depth)], False, True
    if word not in _CLOSERS or depth == 0:
        return depth, blocks, False, False
    functions = [level for kind, level in blocks if kind == "def"]
    # `return` ends the function it is in (a paste's functions end with it); the others end their own block
    depth = functions[-1] if word == "return" and functions else depth - 1
    classes = [level for kind, level in blocks if kind == "class"]
    method_closed = bool(classes) and depth == classes[-1] + 1 and bool(functions) and functions[-1] == depth
    return depth, [(kind, level) for kind, level in blocks if level < depth], method_closed, False
