"""JSON report (schema version 1): qdoctor.report.model.to_dict, serialized."""

from __future__ import annotations

import json
from typing import Any

from qdoctor.report.model import Report, to_dict


def render(report: Report, root: str | None = None, **_: Any) -> str:
    """``root``: file paths under it are written relative to it (default: the current directory)."""
    return json.dumps(to_dict(report, root), indent=2, sort_keys=False) + "\n"
