"""Helpers for the rules' readings of a report's text (``@from_text``): the steps qdoctor.load.static_read found,
which of them may be reported (those that did not run: what ran is the run's to judge), and where they are.
Pure functions over Facts."""

from __future__ import annotations

from qdoctor.facts import Facts, SourceLocation
from qdoctor.facts.report import StaticStep


def steps(facts: Facts, *kinds: str) -> list[StaticStep]:
    read = facts.target.static_read
    return read.of(*kinds) if read is not None else []


def unverified(step: StaticStep, facts: Facts) -> bool:
    """A step qdoctor may judge from the text: it did not run, or no model of the report ran at all (then what a
    function body would have done is not known either). A step that ran on a model qdoctor checked is the run's."""
    return facts.modules is None or step.ran is False


def where(step: StaticStep, facts: Facts) -> SourceLocation | None:
    read = facts.target.static_read
    file = read.file if read is not None else None
    return SourceLocation(file, step.line, step.code) if file else None


def before(facts: Facts, step: StaticStep, *kinds: str) -> list[StaticStep]:
    """The steps of ``kinds`` on lines before ``step``, nearest last."""
    return [s for s in steps(facts, *kinds) if s.line < step.line]


def names_of(step: StaticStep) -> set[str]:
    """The variables a step's model goes by: what it acts on and what it binds."""
    return {n for n in (step.model, step.result) if n}


def evidence(step: StaticStep, **extra: object) -> dict[str, object]:
    found: dict[str, object] = {"line": step.line, "code": step.code}
    if step.in_function:
        found["in_function"] = step.in_function
    found.update(extra)
    return found
