"""How a script is run: statement by statement past its errors (the default) or stopping at the first, and whether
offline stand-ins replace what this machine cannot give (qdoctor.load.standins)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoadOptions:
    keep_going: bool = True  # run every top-level statement, recording each error (False: --stop-on-error)
    stand_ins: bool = True  # offline stand-ins for pretrained weights, datasets, checkpoints, CUDA (--no-stand-ins)
    # keep-going: a top-level statement still running after this many seconds is stopped (a report's own timing
    # loop of 1000 forwards; qdoctor measures speed itself) and the next one runs. None: no limit.
    statement_seconds: float | None = 60.0
