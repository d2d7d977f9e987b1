"""Treatment rounds (qdoctor.run.treatment): the fixed model is examined and treated again while it is still slower
than fp32 or below the SQNR floor.

The loop's stopping rules are tested on hand-built reports with stand-in stages (no model runs); the stacked-causes
fixtures end to end under the fake round timer of tests/conftest.py (a direction that must be stable is never left to
the machine's load)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import codes, fixed_rounds, fixture_path, run_check
from factsbuild import make_facts

from qdoctor.diagnose.findings import Finding, Location, Severity
from qdoctor.facts import Benchmarks, Ratio
from qdoctor.facts.prescription import FixAll, Prescription
from qdoctor.report.model import Report
from qdoctor.run.treatment import still_ill, treat

SLOWER = Ratio(0.5, 0.45, 0.55)
FASTER = Ratio(3.0, 2.8, 3.2)


def _finding(code: str, module: str = "conv") -> Finding:
    return Finding(code, code.lower(), Severity.WARNING, f"{code} says so", Location(module=module))


def _report(findings: list[Finding], ratio: Ratio | None = None, fix: FixAll | None = None) -> Report:
    facts = make_facts()
    facts.benchmark = Benchmarks(subject=None, float_baseline=None, paired_speedup=ratio)
    report = Report(facts=facts, findings=findings, skipped=[], notes=[], qdoctor_version="test")
    report.prescription = Prescription(fix_all=fix) if fix is not None else None
    return report


def _fix(codes_: list[str], vs_float: Ratio, sqnr: float = 35.0) -> FixAll:
    return FixAll(applied=True, fixes=codes_, vs_float=vs_float, after_sqnr_db=sqnr, after_ms=1.0, code="# fixed")


class Stages:
    """Stand-in stages: round N (from 2) diagnoses ``rounds[N-2]`` = (findings, its fix-all or None, its ratio)."""

    def __init__(self, rounds: list[tuple[list[Finding], FixAll | None, Ratio | None]]):
        self.rounds, self.examined = rounds, 0

    def gather(self, loaded, earlier):
        self.examined += 1
        return make_facts()

    def diagnose(self, facts):
        findings, _, ratio = self.rounds[self.examined - 1]
        return _report(list(findings), ratio)

    def verify(self, loaded, facts, findings, plan):
        fix = self.rounds[self.examined - 1][1]
        return (Prescription(fix_all=fix) if fix is not None else None), SimpleNamespace(
            model=object(), plan=None, engine="x86", threads=1
        )

    def after(self, report):
        return []

    def run(self, report: Report, budget: int = 3):
        loaded = SimpleNamespace(target=make_facts().target, user_engine="qnnpack", user_num_threads=1)
        fixed = SimpleNamespace(model=object(), plan=None, engine="x86", threads=1)
        return treat(loaded, report, fixed, [], budget, (self.gather, self.diagnose, self.verify, self.after))


def _loaded_replace(monkeypatch):
    # the stand-in target is no dataclass: _examining copies it field by field
    monkeypatch.setattr("qdoctor.run.treatment._examining", lambda loaded, fixed, number: loaded)


def test_still_ill_names_a_slowdown_or_a_sub_floor_sqnr_and_nothing_else():
    assert "slower than fp32" in still_ill(_fix(["QD003"], SLOWER))
    assert "below the 20 dB floor" in still_ill(_fix(["QD003"], FASTER, sqnr=12.0))
    assert still_ill(_fix(["QD003"], FASTER)) is None
    assert still_ill(_fix(["QD003"], Ratio(1.0, 0.9, 1.1))) is None  # within noise of fp32: not a slowdown
    assert still_ill(_fix(["QD003"], FASTER, sqnr=12.0), accuracy_judged=False) is None
    assert still_ill(FixAll(applied=False, reason="no fix could be applied")) is None
    assert still_ill(None) is None


def test_a_healthy_fix_all_ends_the_treatment_after_round_one(monkeypatch):
    _loaded_replace(monkeypatch)
    report = _report([_finding("QD003")], SLOWER, _fix(["QD003"], FASTER))
    stages = Stages([])
    treatment = stages.run(report)
    assert stages.examined == 0 and len(treatment.rounds) == 1
    assert "healthy" in treatment.rounds[0].stopped
    assert report.prescription.treatment is None  # no second round: the report shows no plan


def test_a_second_round_names_the_residual_cause_and_its_fix_heals(monkeypatch):
    _loaded_replace(monkeypatch)
    report = _report([_finding("QD003")], SLOWER, _fix(["QD003"], SLOWER))
    stages = Stages([([_finding("QD023", "blocks.0.conv1")], _fix(["QD023"], FASTER), SLOWER)])
    treatment = stages.run(report)
    assert [r.new_codes for r in treatment.rounds] == [["QD003"], ["QD023"]]
    assert "healthy" in treatment.rounds[-1].stopped
    assert report.prescription.treatment is treatment
    assert codes(report) == ["QD003", "QD023"]
    [residual] = [f for f in report.findings if f.rule == "QD023"]
    assert residual.evidence["treatment_round"] == 2
    assert treatment.final_code == "# fixed"
    assert treatment.remains == []


def test_a_round_that_finds_nothing_new_stops_for_lack_of_progress(monkeypatch):
    _loaded_replace(monkeypatch)
    report = _report([_finding("QD003")], SLOWER, _fix(["QD003"], SLOWER))
    stages = Stages([([_finding("QD003")], _fix(["QD003"], SLOWER), SLOWER)] * 3)
    treatment = stages.run(report)
    assert len(treatment.rounds) == 2
    assert "no progress" in treatment.rounds[-1].stopped


def test_a_round_with_no_cause_on_a_healthy_model_says_so(monkeypatch):
    _loaded_replace(monkeypatch)
    report = _report([_finding("QD003")], SLOWER, _fix(["QD003"], SLOWER))
    stages = Stages([([], None, FASTER)])
    treatment = stages.run(report)
    assert len(treatment.rounds) == 2
    assert "the model is healthy" in treatment.rounds[-1].stopped


def test_the_budget_of_rounds_is_kept(monkeypatch):
    _loaded_replace(monkeypatch)
    report = _report([_finding("QD003")], SLOWER, _fix(["QD003"], SLOWER))
    rounds = [([_finding(f"QD02{i}", f"layer{i}")], _fix([f"QD02{i}"], SLOWER), SLOWER) for i in range(5)]
    stages = Stages(rounds)
    treatment = stages.run(report, budget=3)
    assert len(treatment.rounds) == 3 and stages.examined == 2
    assert "budget of 3 round(s) is spent" in treatment.rounds[-1].stopped
    assert stages.run(_report([_finding("QD003")], SLOWER, _fix(["QD003"], SLOWER)), budget=1).rounds[0].stopped


STACKED = "fixtures/treatment_qnnpack_depthwise.py"


@pytest.fixture(scope="module")
def stacked():
    """qnnpack on x86 + a depthwise 4x4 stride-2 kernel off the x86 fast path, under the fake timer: int8 and every
    fixed model 3x slower than fp32, so each round's fix-all still needs treatment."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("qdoctor.gather.timing.time_models", fixed_rounds(6.0, 2.0))
        return {rounds: run_check(fixture_path(STACKED), bench=True, verify=True, rounds=rounds) for rounds in (1, 2)}


def test_stacked_causes_are_found_in_order_round_by_round(stacked):
    report = stacked[2]
    treatment = report.treatment
    assert treatment is not None and len(treatment.rounds) == 2
    first, second = treatment.rounds
    assert "QD003" in first.new_codes and first.fix_all.fixes == ["QD003"]
    assert first.fix_all.engine == "x86"
    # round 2 examines the x86 model: its own profile shows what remains (the depthwise layers, else QD024 with the
    # fixed model's own breakdown), never QD003 again
    assert "QD003" not in second.new_codes
    residual = [f for f in report.findings if f.evidence.get("treatment_round") == 2]
    assert residual and {f.rule for f in residual} <= {"QD023", "QD024", "QD005", "QD008"}
    # QD024 speaks from round 2's own profile
    assert all("as written" not in f.evidence.get("profiled", "") for f in residual)
    assert report.facts.treatment_round == 1
    assert "the budget of 2 round(s) is spent" in second.stopped
    # the composed recipe keeps round 1's engine fix
    assert 'engine = "x86"' in treatment.final_code


def test_one_round_is_the_check_without_treatment(stacked):
    report = stacked[1]
    assert report.treatment is None
    assert "QD003" in codes(report)
    assert all("treatment_round" not in f.evidence for f in report.findings)


def test_every_format_shows_the_treatment_plan(stacked):
    from conftest import as_json

    from qdoctor.report.render import OutputFormat, render

    report = stacked[2]
    data = as_json(report)
    assert [r["round"] for r in data["treatment"]["rounds"]] == [1, 2]
    assert data["treatment"]["final_code"]
    for fmt in (OutputFormat.terminal, OutputFormat.markdown, OutputFormat.html):
        text = render(report, fmt)
        assert "reatment plan" in text, fmt


def test_no_stubs_uncalibrated_then_an_outlier_channel_second_round_heals_it():
    """Round 1 sees the crash (no QuantStub) and the uncalibrated observers; only the fixed model runs, and its SQNR
    is below the floor: round 2 finds the per-tensor outlier channel, and its fixes bring the SQNR back."""
    report = run_check(fixture_path("fixtures/treatment_stubs_calibration_outlier.py"), verify=True, rounds=3)
    treatment = report.treatment
    assert treatment is not None and len(treatment.rounds) == 2
    first, second = treatment.rounds
    assert {"QD001", "QD002"} <= set(first.new_codes)
    assert first.fix_all.after_sqnr_db < 20.0
    assert "QD021" in second.new_codes
    assert second.fix_all.after_sqnr_db >= 20.0
    assert "healthy" in second.stopped
    qd021 = [f for f in report.findings if f.rule == "QD021"]
    assert qd021 and qd021[0].evidence["treatment_round"] == 2
    # the composed recipe: round 1's stubs and calibration, and round 2's weights fix
    assert "QuantWrapper" in treatment.final_code and "calibration_data()" in treatment.final_code


def test_fused_in_train_mode_and_never_converted_both_causes_then_healthy():
    report = run_check(fixture_path("fixtures/treatment_train_fused_not_converted.py"), verify=True, rounds=3)
    assert {"QD006", "QD009"} <= set(codes(report))
    fix_all = report.prescription.fix_all
    assert {"QD006", "QD009"} <= set(fix_all.fixes) and fix_all.after_sqnr_db >= 20.0
    assert report.treatment is None  # the first fix-all is healthy: no second round


def test_stand_in_calibration_code_takes_the_tensor_out_of_a_tuple_of_inputs():
    """The script's `example_inputs = (x,)` is a tuple: the calibration snippet must index it, not randn_like it."""
    import torch

    report = run_check(fixture_path("fixtures/treatment_train_fused_not_converted.py"), verify=True, rounds=1)
    code = report.prescription.fix_all.code
    assert "torch.randn_like(example_inputs[0])" in code and "randn_like(example_inputs)" not in code
    lines = code.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("calibration_batches = "))
    seen: list = []
    namespace = {"torch": torch, "example_inputs": (torch.randn(1, 3, 32, 32),), "qmodel": seen.append}
    exec("\n".join(lines[start : start + 4]), namespace)  # the calibration loop runs as printed
    assert len(seen) == 3 and all(isinstance(b, torch.Tensor) for b in seen)
