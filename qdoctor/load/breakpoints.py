"""Skip a script's debugger breakpoints while it runs: ``breakpoint()``, ``pdb.set_trace()`` and ``ipdb.set_trace()``.

Scripts pasted from an experiment often end in ``import pdb; pdb.set_trace()`` to look at the quantized model. qdoctor
runs them with an empty stdin and no terminal: pdb would read end-of-file, quit, and raise ``BdbQuit`` in the
statement, which is no failure of the script. Each breakpoint instead returns at once (what a user's ``continue``
does) and its line is noted (``Target.breakpoints_skipped``), so the rest of the statement and the script still run.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from qdoctor.facts.location import user_frame
from qdoctor.load.when_imported import when_imported

_SET_TRACE = "set_trace"  # pdb's and ipdb's breakpoint function


@contextlib.contextmanager
def skipping_breakpoints(user_file: str | None, lines: list[int]) -> Iterator[None]:
    """While the script runs, every breakpoint it reaches returns at once; its line in ``user_file`` joins ``lines``."""
    user_path = str(Path(user_file).resolve()) if user_file else None

    def skip(*args: Any, **kwargs: Any) -> None:
        found = user_frame(sys._getframe(1), user_path) if user_path else None
        line = found.line if found is not None else 0
        if line not in lines:
            lines.append(line)

    patched: list[tuple[ModuleType, Any]] = []

    def patch(module: ModuleType) -> None:
        if hasattr(module, _SET_TRACE):
            patched.append((module, getattr(module, _SET_TRACE)))
            setattr(module, _SET_TRACE, skip)

    saved_hook = sys.breakpointhook
    sys.breakpointhook = skip
    patch(importlib.import_module("pdb"))  # the module the script's `import pdb` gets
    try:
        with when_imported("ipdb", patch):
            yield
    finally:
        sys.breakpointhook = saved_hook
        for module, original in reversed(patched):
            setattr(module, _SET_TRACE, original)
