"""The fault-injection matrix, CI subset (tests/matrix/generate.py: CI): small models, every fault and every script
style at least once, checked end to end without timing (bench=False). bench/matrix.py runs all the cells.

A cell passes when qdoctor's report has every code its fault implies and none that must be absent (no invented
crash, no error finding on a reference recipe). Cells that fail because of work pending elsewhere are listed with
their reason in tests/matrix/expectations.toml and run as strict xfails.
"""

from __future__ import annotations

import ast
from collections import defaultdict

import pytest

from matrix.faults import FAULTS
from matrix.generate import CI, Cell, cells, ci_cells
from matrix.models import MODELS
from matrix.outcome import Outcome, check_cell, pending, pending_reason, problems
from matrix.styles import STYLES

_OUTCOMES: dict[str, Outcome] = {}


@pytest.fixture(scope="session")
def matrix_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("matrix")


def outcome_of(cell: Cell, folder) -> Outcome:
    """Each cell is checked once per session, however many tests read it."""
    if cell.id not in _OUTCOMES:
        _OUTCOMES[cell.id] = check_cell(cell, folder)
    return _OUTCOMES[cell.id]


def _params() -> list:
    known = pending()
    params = []
    for cell in ci_cells():
        reason = pending_reason(cell.id, known)
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        params.append(pytest.param(cell, marks=marks, id=cell.id))
    return params


@pytest.mark.parametrize("cell", _params())
def test_cell(cell, matrix_folder):
    outcome = outcome_of(cell, matrix_folder)
    found = problems(cell, outcome)
    assert not found, (found, outcome.codes, outcome.subject, outcome.float_baseline, outcome.crashed)


def test_the_style_never_changes_the_findings(matrix_folder):
    """Per (model, fault), the codes are the same in every style the CI subset checks it in."""
    known = pending()
    by_pair: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for cell in ci_cells():
        if pending_reason(cell.id, known) is None:
            by_pair[(cell.model.name, cell.fault.name)].append(cell)
    compared = [group for group in by_pair.values() if len(group) > 1]
    assert len(compared) >= 3
    for group in compared:
        found = {cell.style.name: outcome_of(cell, matrix_folder).codes for cell in group}
        assert len({tuple(codes) for codes in found.values()}) == 1, (group[0].model.name, group[0].fault.name, found)


def test_the_matrix_is_big_enough_and_the_ci_subset_covers_every_fault_and_style():
    everything = cells()
    assert len(MODELS) >= 8 and len(FAULTS) >= 12 and len(STYLES) >= 6
    assert {c.model.name for c in everything} == set(MODELS)  # every model has applicable faults
    assert {c.fault.name for c in everything} == set(FAULTS)  # every fault applies to some model
    ci = ci_cells()
    assert len(set(CI)) == len(CI)
    known = pending()
    assert {c.fault.name for c in ci if pending_reason(c.id, known) is None} == set(FAULTS)  # each one passing
    assert {c.style.name for c in ci} == set(STYLES)
    assert all(c.model.small for c in ci)
    assert all(c in everything for c in ci)  # the CI subset holds applicable cells only


def test_every_generated_script_parses_and_carries_its_expectations():
    for cell in cells():
        text = cell.script()
        ast.parse(text, filename=cell.id)
        header = text.splitlines()[:4]
        assert header[2] == f"# expect: {' '.join(cell.expect) or '-'}", cell.id
        assert header[3].startswith(f"# absent: {' '.join(cell.absent)}"), cell.id
        assert "QD014" in cell.absent  # no cell may invent a crash


def test_a_fault_changes_one_thing_in_the_script():
    """Each fault's script differs from the same style's reference recipe, and the style's names are in it."""
    for cell in cells(styles=["arbitrary"]):
        if cell.fault.name == "none":
            continue
        healthy = Cell(cell.model, FAULTS["none"], cell.style)
        assert cell.script().splitlines()[4:] != healthy.script().splitlines()[4:], cell.id
        assert "int8_net" in cell.script() or "calibrated" in cell.script(), cell.id


def test_the_expectations_file_names_only_real_cells():
    ids = [c.id for c in cells()]
    for pattern in pending():
        assert any(pending_reason(i, {pattern: "x"}) for i in ids), pattern
