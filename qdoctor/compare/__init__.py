"""`qdoctor compare`: apply quantization recipes to copies of a float model, measure latency, size and accuracy of
each, and recommend the fastest one that stays accurate. ``compare()`` returns a CompareResult; reporters in
qdoctor.compare.reporters render it."""

from qdoctor.compare.core import CompareOptions, compare
from qdoctor.compare.result import Candidate, CompareResult, Limits, Recommendation, recommend, to_dict

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
