"""The regression corpus: fixtures/reports/<name>/ reproduces a public bug report or tutorial (its link in
expected.toml and at the top of script.py; changed only to run offline: random weights, synthetic inputs), with the
findings qdoctor must give and the root cause. Each is checked end to end like a user would run it: in-process
(bench=False, no profile) when the finding needs no timing; the timing-dependent ones (timed = true) under the
`corpus_timed` marker, with short timings.

Healthy tutorial recipes are controls (control = true): no error finding, no crash. Reports qdoctor gets wrong today
because of work in another slice of issue 15 are marked `xfail = "<reason, issue class>"` and run strictly: when the
fix lands they XPASS and fail, so the xfail is flipped (removed) at merge time rather than forgotten.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FIXTURES, codes, run_check

tomllib = pytest.importorskip("tomllib")

REPORTS = sorted(p for p in (FIXTURES / "reports").iterdir() if (p / "expected.toml").is_file())


def expected(case: Path) -> dict:
    return tomllib.loads((case / "expected.toml").read_text())


def _cases(timed: bool) -> list:
    params = []
    for case in REPORTS:
        spec = expected(case)
        if bool(spec.get("timed")) != timed:
            continue
        marks = [pytest.mark.corpus_timed] if timed else []
        if spec.get("slow"):  # a script that trains or runs a torchvision model for tens of seconds
            marks.append(pytest.mark.corpus_slow)
        if spec.get("xfail"):
            marks.append(pytest.mark.xfail(reason=spec["xfail"], strict=True))
        params.append(pytest.param(case, marks=marks, id=case.name))
    return params


def test_the_corpus_has_25_reports_with_links_and_controls():
    specs = [expected(case) for case in REPORTS]
    assert len(specs) >= 25
    assert all(s["link"].startswith("https://") and s.get("root_cause") for s in specs)
    assert all(s["link"] in (case / "script.py").read_text() for s, case in zip(specs, REPORTS, strict=True))
    assert sum(1 for s in specs if s.get("control") and not s.get("xfail")) >= 3  # healthy tutorial recipes


_REPORTS: dict[tuple[Path, bool], object] = {}


def report_of(case: Path, bench: bool):
    """Each case is checked once per session, however many tests read its report."""
    key = (case, bench)
    if key not in _REPORTS:
        import torch._dynamo

        # each case as from the command line, where every target runs in its own worker process: dynamo's caches and
        # skipped code objects (torch._dynamo.disable in ao_subclass_int8_tensor) must not carry over to the next one
        torch._dynamo.reset()
        _REPORTS[key] = run_check(case / "script.py", bench=bench, profile=bench)
    return _REPORTS[key]


def check_case(case: Path, bench: bool) -> None:
    spec = expected(case)
    report = report_of(case, bench)
    found = codes(report)
    for code in spec.get("expect", []):
        assert code in found, (code, found, [f.message for f in report.findings])
    for code in spec.get("absent", []):
        assert code not in found, (code, [f.message for f in report.findings if f.rule == code])
    if spec.get("control"):
        run_crash = report.facts.trace.crash if report.facts.trace else None
        assert report.facts.target.load_crash is None and run_crash is None
        assert not [f for f in report.findings if f.severity.value == "error"], [f.message for f in report.findings]
    if spec.get("subject"):  # the model the script actually quantized and ran
        assert report.facts.target.subject_name == spec["subject"], report.facts.target.subject_name
    if spec.get("float_baseline"):  # the float model the script quantized is found and measured against
        assert report.facts.target.float_name is not None, report.notes
    if "exit_code" in spec:  # the CLI's exit code for a checked report (2 would be "could not check")
        assert report.exit_code("warning") == spec["exit_code"]


@pytest.mark.parametrize("case", _cases(timed=False))
def test_report_reproduction(case):
    check_case(case, bench=False)


@pytest.mark.parametrize("case", _cases(timed=True))
def test_timed_report_reproduction(case):
    bench = report_of(case, bench=True).facts.benchmark
    ratio = bench.speedup_ratio if bench is not None else None
    # on a busy machine the interval is wider: when it straddles the thresholds the timing verdicts rest on (1.0, and
    # QD008's 5 % margin) qdoctor rightly gives none
    if ratio is not None and ratio.contended and not (ratio.clearly_below(1 / 1.05) or ratio.clearly_above(1.05)):
        pytest.skip("the machine was busy and the speedup's interval straddles the threshold this case rests on")
    check_case(case, bench=True)


def test_a_crash_in_library_code_names_the_library_line_and_the_users_call():
    """Issue 15 class 4: torchvision's `out += identity` on quint8 is QD011's cause, and the finding says where."""
    report = report_of(FIXTURES / "reports" / "issue15_class4_torchvision_resnet", bench=False)
    finding = next(f for f in report.findings if f.rule == "QD011")
    assert "torchvision/models/resnet.py" in finding.evidence["library_line"]
    assert "out += identity" in finding.message
    assert "torchvision.models.quantization" in (finding.fix or "")
    assert (finding.location.file or "").endswith("script.py")  # the user's call, not the library file


def test_a_model_its_flow_left_float_says_which_qconfig_torch_ignored():
    """pytorch/pytorch#82708 on today's torch: prepare_fx no longer raises on tanh with the default qconfig, it warns
    and ignores it, so the model stays float; the report quotes that warning beside "not quantized"."""
    from qdoctor.report.notes import ignored_qconfig_warnings

    report = report_of(FIXTURES / "reports" / "gh82708_fx_tanh_qconfig_dict", bench=False)
    assert not report.facts.is_quantized
    assert any("ignored a qconfig" in n and "FixedQParamsObserver" in n for n in report.notes), report.notes
    assert ignored_qconfig_warnings(["DeprecationWarning: torch.ao.quantization is deprecated", ""]) == []
