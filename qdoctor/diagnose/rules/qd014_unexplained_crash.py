"""QD014 unexplained-crash: a crash that no rule explains is still reported, with its location.

The residual rule: the registry hands it the crashes whose cause no registered rule owns (``@rule(owns=...)``).
"""

from __future__ import annotations

from collections.abc import Iterator

from qdoctor.diagnose import crash_causes as crashes
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.registry import rule
from qdoctor.diagnose.unrun import unrun_converts
from qdoctor.facts import CrashInfo, Facts
from qdoctor.facts.location import display_path

NOT_KNOWN = "not a known quantization failure"


def _frames(crash: CrashInfo, count: int = 3) -> list[str]:
    """The last ``count`` frames of the traceback, one line each ("file:line in function")."""
    frames = []
    for line in crash.traceback.splitlines():
        text = line.strip()
        if text.startswith('File "'):
            path, _, rest = text[len('File "') :].partition('", line ')
            number, _, func = rest.partition(", in ")
            frames.append(f"{display_path(path)}:{number} in {func}")
    return frames[-count:]


@rule(
    "QD014",
    "unexplained-crash",
    Severity.ERROR,
    "the model or the script raised an error that is not a known quantization failure (reported, never hidden)",
    residual=True,
)
def unexplained_crash(facts: Facts, unexplained: list[CrashInfo]) -> Iterator[Finding]:
    for crash in unexplained:
        source = crashes.crash_source(crash, facts)
        where = f" at line {source.line}" if source else ""
        if crash.phase == "run":
            inside = f" in `{crash.module}`" if crash.module else ""
            message = f"the model raised {crashes.short_message(crash)}{inside}{where}: {NOT_KNOWN}."
            severity = Severity.ERROR
        else:
            message = (
                f"the script raised {crashes.short_message(crash)}{where}: {NOT_KNOWN}. qdoctor checked the "
                "objects the script had defined before it."
            )
            severity = Severity.WARNING
        wrong = crashes.not_a_model(crash)
        if wrong is not None:
            message += f" The object it used as a model is a `{wrong[0]}`: the name holds {wrong[1]}."
        undone = unrun_converts(facts, crash)
        if undone:
            message += (
                f" The statement that raised also holds `{undone[0].code}` (line {undone[0].line}), which never "
                "ran: the model it would have converted is left prepared."
            )
        backend = crashes.backend_error(crash.message)
        if crash.phase == "load" and backend is not None and crashes.has_int8_modules(facts):
            message += (
                f" It names {backend.op} on the {backend.backend} backend, an int8/float boundary "
                "error, but qdoctor's own run of the model did not raise it: the script ran another model or input."
            )
        yield unexplained_crash.finding(
            message,
            module=crash.module,
            source=source,
            evidence={
                "phase": crash.phase,
                "type": crash.type,
                "message": crashes.first_line(crash.message)[:500],
                "last_frames": _frames(crash),
            },
            severity=severity,
            leads_to=("QD006",) if undone else (),
        )
