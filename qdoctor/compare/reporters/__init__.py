"""Pure reporters for `qdoctor compare`: ``render(result) -> str``, one module per format, chosen by CompareFormat.

The same formats as `qdoctor check` (terminal, json, markdown, html); kept in this package so that compare's
renderers and check's evolve without stepping on each other.
"""

from __future__ import annotations

import importlib
from enum import Enum
from typing import Any


class CompareFormat(str, Enum):
    terminal = "terminal"
    json = "json"
    markdown = "markdown"
    html = "html"


def render(result: Any, output_format: CompareFormat, **options: Any) -> str:
    module = importlib.import_module(f"qdoctor.compare.reporters.{output_format.value}_report")
    return module.render(result, **options)
