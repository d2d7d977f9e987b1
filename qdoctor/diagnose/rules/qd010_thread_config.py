"""QD010 thread-config: intra-op / inter-op thread settings that starve or oversubscribe the CPU."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.locate import script_line
from qdoctor.diagnose.registry import rule
from qdoctor.facts import Facts, SourceLocation

# The variables that set torch's intra-op thread count when torch starts.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCH_NUM_THREADS")
_VALUE = r"\s*['\"]?\s*(?P<value>\d+)?"
_SET_THREADS = re.compile(r"set_num_threads\s*\(" + _VALUE)
_SET_INTEROP = re.compile(r"set_num_interop_threads\s*\(" + _VALUE)
_ENV_IN_SCRIPT = re.compile(
    r"(?:environ\s*\[\s*['\"](?P<var1>(?:OMP|MKL|TORCH)_NUM_THREADS)['\"]\s*\]\s*="
    r"|(?:environ\.setdefault|putenv)\s*\(\s*['\"](?P<var2>(?:OMP|MKL|TORCH)_NUM_THREADS)['\"]\s*,)" + _VALUE
)


@dataclass
class Setting:
    """One place that sets the thread count: a line of the script or a variable of the environment."""

    text: str  # `torch.set_num_threads(1)` (line 7), or OMP_NUM_THREADS=1
    value: int | None  # the number set, when it is a literal
    source: SourceLocation | None = None


def _script_setting(facts: Facts, pattern: re.Pattern[str]) -> Setting | None:
    """The script's setting in force: its last line that sets it (a later call overrides an earlier one)."""
    line = script_line(facts, pattern, last=True)
    if line is None:
        return None
    match = pattern.search(line.code.split("#", 1)[0])
    value = match.group("value") if match else None
    return Setting(f"`{line.code}` (line {line.line})", int(value) if value else None, line)


def intra_op_settings(facts: Facts) -> list[Setting]:
    """Where the intra-op thread count comes from: the script's calls and assignments first, then the environment."""
    found = [s for s in (_script_setting(facts, _SET_THREADS), _script_setting(facts, _ENV_IN_SCRIPT)) if s]
    for var in THREAD_VARS:
        value = facts.environment.thread_env.get(var)
        if value is not None:
            found.append(Setting(f"{var}={value}", int(value) if value.strip().isdigit() else None))
    return found


@rule(
    "QD010",
    "thread-config",
    Severity.WARNING,
    "torch.set_num_threads / OMP_NUM_THREADS that leave cores idle, or more threads than cores",
)
def thread_config(facts: Facts) -> Iterator[Finding]:
    env = facts.environment
    threads, cores, interop = env.num_threads, env.cpu_count, env.num_interop_threads
    settings = intra_op_settings(facts)
    origin = next((s for s in settings if s.source is not None), settings[0] if settings else None)
    # A thread variable set inside the script may take effect only when the script runs on its own (before torch
    # starts); qdoctor imported torch first. Judge by what the script asks for as well as by what is in force.
    asked = [s.value for s in settings if s.value is not None]
    most, least = max([threads, *asked]), min([threads, *asked])
    evidence: dict = {
        "num_threads": threads,
        "cpu_count": cores,
        "num_interop_threads": interop,
        "thread_env": env.thread_env,
        "set_by": [s.text for s in settings],
        "recommended_threads": cores,  # what the verified fix re-benchmarks with (qdoctor/fixes/qd010_threads.py)
    }
    bench = facts.benchmark
    if bench is not None and bench.subject is not None:
        evidence["subject_ms"] = round(bench.subject.median_ms, 3)
        evidence["timed_with_threads"] = bench.subject.num_threads
    set_by = f" (set by {origin.text})" if origin else ""
    env_vars = [v for v in THREAD_VARS if v in env.thread_env]
    fix = (
        f"torch.set_num_threads({cores})  # one intra-op thread per core this process may use\n"
        + (f"# and unset {', '.join(env_vars)} (or set it to {cores}) where the process starts\n" if env_vars else "")
        + f"# serving N models side by side? give each {cores} // N threads instead"
    )
    if most > cores:
        yield thread_config.finding(
            f"torch is set to {most} intra-op threads on {cores} cores{set_by}: the threads oversubscribe the CPU "
            "and preempt one another inside every int8 and float kernel.",
            module="",
            source=origin.source if origin else None,
            evidence=evidence,
            fix=fix,
        )
    elif least < cores and origin is not None:
        idle = cores - least
        yield thread_config.finding(
            f"torch is set to {least} intra-op thread{'s' if least != 1 else ''} while {cores} cores are "
            f"available{set_by}: {idle} core{'s' if idle != 1 else ''} stay{'s' if idle == 1 else ''} idle during every forward pass"
            + (
                ", and qdoctor's timings were taken under that setting"
                if evidence.get("timed_with_threads") == least
                else ""
            )
            + ".",
            module="",
            source=origin.source,
            evidence=evidence,
            fix=fix,
        )
    interop_setting = _script_setting(facts, _SET_INTEROP)
    interop_asked = interop_setting.value if interop_setting and interop_setting.value else interop
    if max(interop, interop_asked) > cores:
        yield thread_config.finding(
            f"torch has {max(interop, interop_asked)} inter-op threads on {cores} cores: inter-op work "
            "(torch.jit.fork, parallel graph branches) competes with the intra-op threads of every kernel.",
            module="",
            source=interop_setting.source if interop_setting else None,
            evidence=evidence,
            fix=f"torch.set_num_interop_threads({min(cores, 2)})  # before any parallel work starts",
            severity=Severity.INFO,
        )
