"""Which calibration data a rebuilt model gets, described for the report, with the code that does the same: the
script's calibration_data() when it has one, else the example inputs plus a few random batches like them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qdoctor.facts.location import exception_line
from qdoctor.flows import calibration_batches
from qdoctor.load.target import LoadedTarget

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


def without_rows(batches: list[tuple[Any, ...]], rows: tuple[tuple[int, int], ...]) -> list[tuple[Any, ...]]:
    """The batches with the (batch, row) pairs left out of every tensor that has that row; emptied batches dropped."""
    import torch

    cleaned = []
    for index, batch in enumerate(batches):
        drop = {row for b, row in rows if b == index}
        if not drop:
            cleaned.append(batch)
            continue
        first = next((t for t in batch if isinstance(t, torch.Tensor) and t.dim() > 0), None)
        if first is None:
            cleaned.append(batch)
            continue
        keep = torch.tensor([r for r in range(first.shape[0]) if r not in drop], dtype=torch.long)
        if keep.numel() == 0:
            continue
        cleaned.append(
            tuple(
                t.index_select(0, keep)
                if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == first.shape[0]
                else t
                for t in batch
            )
        )
    return cleaned


def skipping_rows_code(loop: CalibrationCode, rows: tuple[tuple[int, int], ...]) -> CalibrationCode:
    """The calibration loop of ``loop``, leaving out the (batch, row) pairs: QD022's fix."""

    def code(work: str) -> str:
        original = loop(work)
        lines = original.splitlines()
        loop_line = next((i for i, line in enumerate(lines) if line.lstrip().startswith("for batch in ")), None)
        if loop_line is None:
            return f"# leave out the calibration rows (batch, row) {sorted(rows)!r}\n{original}"
        indent = lines[loop_line][: len(lines[loop_line]) - len(lines[loop_line].lstrip())]
        iterable = lines[loop_line].strip()[len("for batch in ") :].rstrip(":")
        body = indent + "    "
        rewritten = lines[:loop_line] + [
            f"{indent}for i, batch in enumerate({iterable}):",
            f"{body}batch = batch if isinstance(batch, (tuple, list)) else (batch,)",
            f"{body}keep = [r for r in range(len(batch[0])) if (i, r) not in bad_rows]",
            f"{body}if keep:",
            f"{body}    {work}(*(t[keep] for t in batch))",
        ]
        return f"bad_rows = {set(rows)!r}  # (batch, row) of the calibration data that set the ranges\n" + "\n".join(
            rewritten
        )

    return code
