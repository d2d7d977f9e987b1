"""A known cause of a crash, declared once and claimed by the one rule that reports it: ``@rule(..., owns=(CAUSE,))``.

Facts hold only the crash; what caused it is decided here, at rule time. The registry derives everything else from
the rules' claims: a crash that a registered rule owns is explained (QD014 unexplained-crash reports the others), and
when a flow step raised before anything was quantized, only the rules that own that flow-step cause run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qdoctor.facts import CrashInfo, Facts


@dataclass(frozen=True)
class Cause:
    id: str  # short, unique among the registered rules' causes, e.g. "int8-on-cuda"
    matches: Callable[[CrashInfo, Facts], bool]  # pure: does this crash, in these facts, have this cause?
    # A step of a quantization flow raised (export, prepare_pt2e, quantize_, a moved import): the model the script
    # meant to quantize may have stayed float, and then this cause is all that is worth reporting about it.
    flow_step: bool = False
