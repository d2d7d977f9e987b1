"""The deployment (``--deploy``) in words, for the report's notes: each program's .pte size, partitions, the ops
left out of the delegates with their lines, its runtime latency, and the int8/float ratio."""

from __future__ import annotations

from qdoctor.facts import Facts
from qdoctor.facts.deploy import UNKNOWN_ROLE, Deployment, LoweredProgram, ScriptLine


def _lines(sources: list[ScriptLine]) -> str:
    return f" at line {', '.join(str(s.line) for s in sources)}" if sources else ""


def _program(program: LoweredProgram, from_pte: bool) -> str:
    left = program.left_out()
    words = (
        f"{'' if program.role == UNKNOWN_ROLE else program.role + ' '}.pte {program.program_bytes / 1000:.1f} kB, "
        f"{program.partitions} delegated partition"
        f"{'s' if program.partitions != 1 else ''} "
    )
    if from_pte:  # the delegates' own ops are not read from a .pte: its delegate calls per backend id
        words += "(" + ", ".join(f"{backend} x{n}" for backend, n in sorted(program.partitions_by_backend.items()))
        words += "; " if program.partitions_by_backend else ""
        calls = program.not_delegated_nodes
        words += f"{calls} kernel call{'s' if calls != 1 else ''} outside the delegates"
    else:
        words += f"({program.delegated_nodes} ops delegated"
    if left:
        words += ", not delegated: " + ", ".join(f"{op.op} x{op.not_delegated}{_lines(op.sources)}" for op in left)
    words += ")"
    if program.latency is not None:
        words += f", {program.latency.median_ms:.3f} ms per call in the runtime"
    return words


def deploy_notes(facts: Facts) -> list[str]:
    deploy: Deployment | None = facts.deploy
    if deploy is None:
        return []
    how = "read from the .pte as given" if deploy.from_pte else f"int8 quantized by {deploy.quantizer}"
    head = f"{deploy.target} ({deploy.runtime}, {deploy.backend or 'no delegate'}; {how})"
    notes = [f"{head}: " + "; ".join(_program(p, deploy.from_pte) for p in deploy.programs)]
    if deploy.speedup is not None:
        s = deploy.speedup
        notes.append(f"{deploy.target}: int8 runs at {s.value:.2f}x the speed of float ({s.low:.2f}-{s.high:.2f})")
    notes.extend(f"{deploy.target}: {part}: {reason}" for part, reason in deploy.unavailable.items())
    return notes
