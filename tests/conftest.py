from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

_LOOKUPS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr")


def _block_network(event: str, args: tuple) -> None:
    """No test touches the network: a connection to an internet address or a host-name lookup raises (an audit
    hook, so it covers every caller in this process, qdoctor's and the scripts it runs; the worker processes of
    `qdoctor check` get the same block in tests/test_isolation.py)."""
    if event in ("socket.connect", "socket.connect_ex"):
        if args[0].family not in (socket.AF_INET, socket.AF_INET6):
            return
    elif event not in _LOOKUPS:
        return
    raise OSError(f"network blocked in qdoctor's tests ({event} {args[1:]!r})")


sys.addaudithook(_block_network)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SCRIPTS = Path(__file__).resolve().parent / "scripts"


def run_check(target: str | Path, *, bench: bool = False, profile: bool = True, verify: bool = False, **kwargs):
    """Check a target in-process with short timings; returns the Report. Verified fixes (counterfactual builds)
    are off unless asked for: only tests/test_verify.py needs them."""
    from qdoctor.gather import GatherOptions
    from qdoctor.run.check import CheckOptions, check

    options = CheckOptions(
        gather=GatherOptions(bench=bench, bench_time=0.05, profile=profile, profile_budget=0.05),
        verify=verify,
        **kwargs,
    )
    return check(str(target), options)


def codes(report) -> list[str]:
    return sorted({f.rule for f in report.findings})


def findings_of(report, code: str) -> list:
    return [f for f in report.findings if f.rule == code]


def fixture_path(name: str | Path) -> Path:
    """A fixture by its name in fixtures/ ("healthy_static.py") or its path in the repository
    ("fixtures/healthy_static.py", "tests/scripts/float_only.py")."""
    name = Path(name)
    return (ROOT / name if len(name.parts) > 1 else FIXTURES / name).resolve()


@pytest.fixture(scope="session")
def check_fixture():
    """Memoised checks of shipped fixtures (several tests, in several files, read the same report): each fixture runs
    once per session however many tests name it, by file name or by repository path."""
    cache: dict[tuple, object] = {}

    def get(name: str | Path, bench: bool = False, profile: bool = True):
        key = (fixture_path(name), bench, profile)
        if key not in cache:
            cache[key] = run_check(key[0], bench=bench, profile=profile)
        return cache[key]

    return get


def as_json(report) -> dict:
    from qdoctor.report.render import OutputFormat, render

    return json.loads(render(report, OutputFormat.json))


def skip_if_busy() -> None:
    """Timing-direction tests compare two measurements taken seconds apart: on a machine loaded by other jobs the
    load shifts between them and the direction means nothing. They skip (saying so) instead of failing."""
    import os

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    cores = os.cpu_count() or 1
    if load > 1.75 * cores:
        pytest.skip(f"machine busy (load average {load:.1f} on {cores} cores): a timing direction is not meaningful")


def fixed_rounds(int8_ms: float, fp32_ms: float, fixed_ms: float | None = None):
    """A stand-in for qdoctor.gather.timing.time_models (a fake timer): every float variant ("float", "float@N")
    takes ``fp32_ms`` per call in every round, the subject ``int8_ms`` and the fixed models ``fixed_ms`` (default
    ``int8_ms``), with a little round-to-round jitter."""
    from qdoctor.gather.rounds import RoundsResult

    def time_models(variants, min_run_time, min_rounds=7, max_rounds=40):
        result = RoundsResult()
        for v in variants:
            if v.key.startswith("float"):
                ms = fp32_ms
            else:
                ms = int8_ms if v.key == "subject" or fixed_ms is None else fixed_ms
            result.per_call[v.key] = [ms / 1000 * (1 + 0.01 * (i % 3 - 1)) for i in range(12)]
            result.number[v.key], result.threads[v.key] = 10, 1
        return result

    return time_models
