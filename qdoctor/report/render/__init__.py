"""Pure reporters: ``render(report) -> str``, one module per format, chosen by OutputFormat."""

from __future__ import annotations

import importlib
from enum import Enum
from typing import Any


class OutputFormat(str, Enum):
    terminal = "terminal"
    json = "json"
    markdown = "markdown"
    sarif = "sarif"
    html = "html"


def render(report: Any, output_format: OutputFormat, **options: Any) -> str:
    module = importlib.import_module(f"qdoctor.report.render.{output_format.value}_report")
    return module.render(report, **options)
