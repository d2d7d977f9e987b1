"""Which calibration data a rebuilt model gets, described for the report, with the code that does the same: the
script's calibration_data() when it has one, else the example inputs plus a few random batches like them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qdoctor.facts.location import exception_line
from qdoctor.load.target import LoadedTarget
from qdoctor.prescribe.quantize import calibration_batches

CALIBRATION_BATCHES = 3  # stand-in batches when the script has no calibration_data(): the example + 2 random
MAX_CALIBRATION_BATCHES = 16  # batches taken from calibration_data() at most

CalibrationCode = Callable[[str], str]  # name of the prepared model -> the calibration loop that feeds it


def _script_calibration(
    loaded: LoadedTarget,
) -> tuple[list[tuple[Any, ...]], str, CalibrationCode] | str:
    """The script's calibration_data() as batches, a description and its loop; or why it gave none."""
    assert loaded.calibration_data is not None
    try:
        items = []
        for item in loaded.calibration_data():
            items.append(item)
            if len(items) > MAX_CALIBRATION_BATCHES:
                break
    except Exception as exc:
        return f"calibration_data() raised {exception_line(exc, 200)}; "
    if not items:
        return ""
    truncated = len(items) > MAX_CALIBRATION_BATCHES
    items = items[:MAX_CALIBRATION_BATCHES]
    batches, _ = calibration_batches(lambda: items, loaded.inputs)
    described = (
        f"the first {len(batches)} batches of calibration_data() from the script"
        if truncated
        else f"calibration_data() from the script ({len(batches)} batches)"
    )
    expr = "calibration_data()" if callable(loaded.namespace.get("calibration_data")) else "calibration_data"
    call = "(*batch)" if isinstance(items[0], (tuple, list)) else "(batch)"
    head = f"itertools.islice({expr}, {MAX_CALIBRATION_BATCHES})" if truncated else expr

    def code(work: str) -> str:
        imports = "import itertools\n" if truncated else ""
        return f"{imports}with torch.no_grad():\n    for batch in {head}:\n        {work}{call}"

    return batches, described, code


def calibration_for(
    loaded: LoadedTarget, stand_in_code: CalibrationCode
) -> tuple[list[tuple[Any, ...]], str, CalibrationCode]:
    """(batches, what they are, their code): the script's own data when it has some, else stand-ins."""
    failed = ""
    if loaded.calibration_data is not None:
        found = _script_calibration(loaded)
        if not isinstance(found, str):
            return found
        failed = found
    batches, described = calibration_batches(None, loaded.inputs, CALIBRATION_BATCHES)
    return batches, failed + described, stand_in_code
