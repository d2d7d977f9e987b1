"""What a statement raised that is no crash of the user's code, but a gap: a name the report never defines (a bug report
pastes the lines around the problem, not the whole program: ``model`` trained elsewhere, a formula of its prose), a
package this machine lacks that is not part of the quantization stack (``matplotlib``), a file of the author's disk
(``open("exported/model.pte", "wb")``, ``os.path.getsize("fp32_model.pth")``), a download qdoctor cannot make
offline (``torch.hub.load('ultralytics/yolov5', ...)``). Reported as a note of what was left out, never as a crash to
diagnose (QD014 would call it "not a known quantization failure": true, and noise).

Pure: reads the exception and the script's source, runs nothing.
"""

from __future__ import annotations

import ast

# The packages of the quantization stack: a report that imports one this torch lacks (a moved API) is diagnosed
# (qdoctor.diagnose.flow_causes), never left out.
STACK = {"torch", "torchvision", "torchao", "executorch", "torchaudio", "torchtext"}


class OfflineUnavailable(RuntimeError):
    """A stand-in could not make what the script asked for without the network (qdoctor.load.standins)."""


def bound_anywhere(source: str) -> dict[str, int]:
    """Every name the source binds, at any depth, with the first line that binds it: assignments, loop and with
    targets, imports, defs, classes, parameters, comprehension variables, except-as names, globals."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            found.append((node.id, line))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append((node.name, line))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found += [((a.asname or a.name).split(".")[0], line) for a in node.names]
        elif isinstance(node, ast.arg):
            found.append((node.arg, line))
        elif isinstance(node, ast.ExceptHandler) and node.name:
            found.append((node.name, line))
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            found += [(name, line) for name in node.names]
        elif isinstance(node, ast.MatchAs) and node.name:
            found.append((node.name, line))
    bound: dict[str, int] = {}
    for name, line in found:
        bound[name] = min(line, bound.get(name, line))
    return bound


def left_out(exc: BaseException, line: int, bound: dict[str, int] | None) -> str | None:
    """The gap ``exc`` (raised by the statement at ``line``) shows, in words; None when it is a crash to diagnose.
    ``bound``: the names the report binds anywhere and where first (a report's text), None for a script run as
    written (whose NameErrors and missing packages are its own). A report often shows a call before the helper it
    calls, or a fragment before the block with its imports: a name bound only further down is left out here too."""
    if isinstance(exc, OfflineUnavailable):
        return f"line {line}: {exc} (qdoctor runs offline)"
    if bound is None:
        return None
    if isinstance(exc, NameError) and not isinstance(exc, UnboundLocalError):
        name = getattr(exc, "name", None)
        if name and name not in bound:
            return f"line {line}: `{name}` is used but never defined in the report (it left it out)"
        if name and bound[name] > line:
            return f"line {line}: `{name}` is used before the report defines it (line {bound[name]})"
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        package = exc.name.split(".")[0]
        if package not in STACK:
            return f"line {line}: `import {exc.name}`: the package is not installed here"
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)) and exc.filename is not None:
        # A report's files stayed on its author's disk (a checkpoint, a config, the folder it writes into), or a line
        # left out above would have written it: the paste cannot bring them, and their absence is no crash.
        return f"line {line}: `{exc.filename}` is a file of the report author's disk, not on this machine"
    return None
