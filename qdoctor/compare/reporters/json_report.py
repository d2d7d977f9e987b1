"""JSON report of a compare (schema version 1): qdoctor.compare.result.to_dict, serialized."""

from __future__ import annotations

import json
from typing import Any

from qdoctor.compare.result import CompareResult, to_dict


def render(result: CompareResult, **_: Any) -> str:
    return json.dumps(to_dict(result), indent=2) + "\n"
