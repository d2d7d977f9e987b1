"""`qdoctor compare`: apply quantization recipes to copies of a float model, measure latency, size and accuracy of
each, and recommend the fastest one that stays accurate. ``compare()`` returns a CompareResult; reporters in
qdoctor.compare.reporters render it.

``compare`` and ``CompareOptions`` (qdoctor.compare.core, which imports torch) are loaded on first use, so that the
result types (qdoctor.compare.result, plain data) import without torch: qdoctor.api builds on them at import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qdoctor.compare.result import Candidate, CompareResult, Limits, Recommendation, recommend, to_dict

if TYPE_CHECKING:
    from qdoctor.compare.core import CompareOptions, compare

_CORE = ("CompareOptions", "compare")


def __getattr__(name: str) -> Any:
    if name in _CORE:
        import importlib

        value = getattr(importlib.import_module("qdoctor.compare.core"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'qdoctor.compare' has no attribute {name!r}")


__all__ = [
    "Candidate",
    "CompareOptions",
    "CompareResult",
    "Limits",
    "Recommendation",
    "compare",
    "recommend",
    "to_dict",
]
