"""Patch a library when, and only if, the checked code imports it: a post-import hook on ``sys.meta_path``.

The stand-ins patch torchvision (its weights and datasets); importing torchvision only to patch it costs about
half a second per check (measured on the 2-core bench machine), and most checked scripts never import it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Callable, Iterator, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds ``name`` with the other finders and calls ``then(module)`` right after the module has executed."""

    def __init__(self, name: str, then: Callable[[ModuleType], None]) -> None:
        self.name, self.then = name, then

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # the real spec, from the finders after this one
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader: Any = spec.loader
        execute, then = loader.exec_module, self.then

        def exec_module(module: ModuleType) -> None:
            execute(module)
            then(module)

        loader.exec_module = exec_module  # this spec's own loader instance
        return spec


@contextlib.contextmanager
def when_imported(name: str, then: Callable[[ModuleType], None]) -> Iterator[None]:
    """Within the block, ``then(module)`` once module ``name`` is imported: at once when it already is, else right
    after the block's code first imports it (never when nothing does)."""
    module = sys.modules.get(name)
    if module is not None:
        then(module)
        yield
        return
    hook = _AfterImport(name, then)
    sys.meta_path.insert(0, hook)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(hook)
