"""QD007 dynamic-quant-low-coverage: dynamic quantization applied where the layers it covers take little time."""

from __future__ import annotations

import re
from collections.abc import Iterator

from qdoctor import facts as F
from qdoctor.diagnose import static_steps as static
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.locate import float_variable, script_line, subject_variable
from qdoctor.diagnose.registry import from_text, rule
from qdoctor.facts import Facts, Profile
from qdoctor.facts import report as R

# Below this share of the float model's time in the layers dynamic quantization converted, the int8 model cannot
# be much faster (Amdahl): with those layers made 2x faster, the best whole-model speedup is 1/(1 - 0.25/2) = 1.14x.
LOW_COVERAGE = 0.25
# Layer types quantize_dynamic converts with its default qconfig_spec (torch.ao.quantization.quantize_dynamic).
DYNAMIC_TYPES = {"Linear", "LSTM", "GRU", "LSTMCell", "GRUCell", "RNNCell"}
# Uncovered types worth naming when they take at least this share: the place static quantization would pay.
NOTABLE_SHARE = 0.05
_QUANTIZE_DYNAMIC = re.compile(r"quantize_dynamic\s*\(")

STATIC_FIX = """\
# Dynamic quantization only converts {covered}; {uncovered_types} still run in fp32.
# Quantize statically, e.g. in FX graph mode (it places quant stubs and fuses Conv-BN-ReLU itself):
import copy
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

torch.backends.quantized.engine = "{engine}"
qconfig_mapping = get_default_qconfig_mapping("{engine}")
prepared = prepare_fx(copy.deepcopy({float_name}).eval(), qconfig_mapping, {inputs})
with torch.no_grad():
    for batch in calibration_batches:  # a few hundred representative inputs
        prepared(batch)
{float_name}_static = convert_fx(prepared)
# Measure every recipe (fp32, dynamic, static per engine) on this model:
#   qdoctor compare {script}"""

DYNAMIC_FIX = """\
# These layer types also have dynamic int8 kernels: include them
{subject} = torch.ao.quantization.quantize_dynamic(
    {float_name}, {{{types}}}, dtype=torch.qint8
)
# Compare recipes on this model:
#   qdoctor compare {script}"""


def _inside(path: str, covered_paths: set[str]) -> bool:
    return path in covered_paths or any(path.startswith(p + ".") for p in covered_paths)


def covered_time(profile: Profile, covered_paths: set[str]) -> float:
    """Per-run ms the profile spends in the covered layers (and anything inside them)."""
    return sum(m.total_ms for m in profile.innermost_modules() if _inside(m.path, covered_paths))


def uncovered_time_by_type(profile: Profile, covered_paths: set[str]) -> dict[str, float]:
    """Per-run ms of the layers dynamic quantization left in float, by layer type, largest first."""
    by_type: dict[str, float] = {}
    for m in profile.innermost_modules():
        if not _inside(m.path, covered_paths):
            by_type[m.type or "?"] = by_type.get(m.type or "?", 0.0) + m.total_ms
    return dict(sorted(by_type.items(), key=lambda kv: -kv[1]))


def _inputs_expression(facts: Facts) -> str:
    """How the fix refers to the example inputs: the script's own name for them, as a tuple."""
    name = facts.target.inputs_name
    if not name:
        return "example_inputs"
    if name.endswith("()") or len(facts.target.inputs) > 1:
        return name
    return f"({name},)"


def _int8_layers(facts: Facts, kind: str) -> list:
    """Modules of ``kind``, without the packed-weight holders inside int8 Linear/LSTM layers."""
    return [m for m in facts.modules_of_kind(kind) if "Packed" not in m.type]


@rule(
    "QD007",
    "dynamic-quant-low-coverage",
    Severity.WARNING,
    "dynamic quantization covers layers that take a small share of the float model's time (e.g. Linear-only on a CNN)",
    needs=("modules", "profile"),
)
def dynamic_quant_low_coverage(facts: Facts) -> Iterator[Finding]:
    dynamic = _int8_layers(facts, F.DYNAMIC_QUANTIZED)
    if not dynamic:
        yield from _converted_nothing(facts)
        return
    if _int8_layers(facts, F.QUANTIZED):
        return  # not dynamic-only: static int8 layers are there too
    covered_paths = {m.path for m in dynamic}
    profile = facts.float_profile if facts.float_profile is not None else facts.profile
    assert profile is not None
    source_of_profile = "float baseline" if profile is facts.float_profile else "quantized model"
    # Module times include the profiler's own scope overhead; never let the shares add up past 100 %.
    total_ms = max(profile.total_ms, sum(m.total_ms for m in profile.innermost_modules()))
    if total_ms <= 0:
        return
    covered_ms = covered_time(profile, covered_paths)
    share = covered_ms / total_ms
    if share >= LOW_COVERAGE:
        return

    by_type = uncovered_time_by_type(profile, covered_paths)
    type_shares = {t: round(ms / total_ms, 3) for t, ms in by_type.items() if ms / total_ms >= 0.01}
    covered_types = sorted({m.type for m in dynamic})
    missed_dynamic = [t for t, s in type_shares.items() if t in DYNAMIC_TYPES and s >= NOTABLE_SHARE]
    notable = [t for t, s in type_shares.items() if s >= NOTABLE_SHARE] or list(type_shares)[:3]

    evidence: dict = {
        "covered_share": round(share, 4),
        "covered_ms": round(covered_ms, 3),
        "total_ms": round(total_ms, 3),
        "profile_of": source_of_profile,
        "dynamic_layers": sorted(covered_paths)[:8],
        "uncovered_time_by_type": dict(list(type_shares.items())[:6]),
        "best_case_speedup": round(1.0 / (1.0 - share + share / 2.0), 3),
    }
    bench = facts.benchmark
    if bench is not None and bench.speedup is not None:
        evidence["measured_speedup"] = round(bench.speedup, 3)
        if bench.speedup_ratio is not None:
            evidence["measured_speedup_interval"] = bench.speedup_ratio.as_dict()
    if facts.size is not None and facts.size.subject_bytes and facts.size.float_bytes:
        evidence["size_mb"] = [round(facts.size.float_bytes / 1e6, 1), round(facts.size.subject_bytes / 1e6, 1)]

    subject, float_name = subject_variable(facts), float_variable(facts)
    script = facts.target.file.rsplit("/", 1)[-1] if facts.target.file else facts.target.spec
    engine = "qnnpack" if facts.environment.is_arm else "x86"
    shares_text = ", ".join(f"{t} {s:.0%}" for t, s in list(type_shares.items())[:4])
    if missed_dynamic:
        fix = DYNAMIC_FIX.format(
            subject=subject,
            float_name=float_name,
            types=", ".join(f"nn.{t}" for t in sorted(set(covered_types) | set(missed_dynamic))),
            script=script,
        )
        advice = f"add {', '.join(missed_dynamic)} to quantize_dynamic's set (they have dynamic int8 kernels)"
    else:
        fix = STATIC_FIX.format(
            covered=", ".join(covered_types),
            uncovered_types=", ".join(notable[:3]) or "the other layers",
            engine=engine,
            float_name=float_name,
            inputs=_inputs_expression(facts),
            script=script,
        )
        advice = "use static quantization, which converts convolutions too (`qdoctor compare` measures both)"
    message = (
        f"dynamic quantization converted {len(dynamic)} layer(s) ({', '.join(covered_types)}) that take "
        f"{share:.2%} of the {source_of_profile}'s time ({covered_ms:.2f} of {total_ms:.2f} ms per run, "
        f"torch.profiler); the rest ({shares_text}) still runs in fp32, so int8 can make this model at most "
        f"{evidence['best_case_speedup']:.2f}x faster. To speed it up, {advice}."
    )
    first = min(dynamic, key=lambda m: m.path)
    source = script_line(facts, _QUANTIZE_DYNAMIC) or first.source
    yield dynamic_quant_low_coverage.finding(message, module=first.path, source=source, evidence=evidence, fix=fix)


@from_text("QD007")
def dynamic_convs(facts: Facts) -> Iterator[Finding]:
    """The report's text asks quantize_dynamic for conv layers, which dynamic quantization leaves float."""
    for step in static.steps(facts, R.DYNAMIC):
        convs = [t for t in step.detail.split(",") if re.fullmatch(r"Conv(Transpose)?[123]d", t)]
        if not convs or not static.unverified(step, facts):
            continue
        yield dynamic_quant_low_coverage.finding(
            f"`{step.code}` (line {step.line}) asks quantize_dynamic for {', '.join(convs)}: dynamic quantization "
            "has no conv kernels and leaves those layers float, so a conv network stays as slow as before "
            "(static: read, not run).",
            source=static.where(step, facts),
            evidence=static.evidence(step, layers=convs),
            fix=STATIC_FIX.format(
                covered="Linear and recurrent layers",
                uncovered_types=", ".join(convs),
                engine="x86" if facts.environment.is_x86 else "qnnpack",
                float_name=step.model,
                inputs="example_inputs",
                script=facts.target.spec,
            ),
            severity=Severity.WARNING,
        )


def _converted_nothing(facts: Facts) -> Iterator[Finding]:
    """The script called quantize_dynamic, and the model it runs has no int8 layer of any kind: none of its layers
    is of a type quantize_dynamic has a dynamic kernel for (a CNN without Linear, quantize_dynamic asked for Conv2d):
    the coverage is zero and the whole model runs in fp32."""
    call = script_line(facts, _QUANTIZE_DYNAMIC)
    quantized_kinds = (F.QUANTIZED, F.QAT, F.OBSERVER, F.FAKE_QUANT)
    if call is None or not facts.modules or facts.modules_of_kind(*quantized_kinds):
        return
    if any(m.type in DYNAMIC_TYPES for m in facts.modules):
        return  # quantize_dynamic would have converted these: this model is not what it returned
    profile = facts.float_profile if facts.float_profile is not None else facts.profile
    assert profile is not None
    total_ms = max(profile.total_ms, sum(m.total_ms for m in profile.innermost_modules()))
    by_type = uncovered_time_by_type(profile, set())
    type_shares = {t: round(ms / total_ms, 3) for t, ms in by_type.items() if total_ms > 0 and ms / total_ms >= 0.01}
    present = sorted({m.type for m in facts.modules if m.is_leaf and m.kind == F.FLOAT})
    notable = [t for t, share in type_shares.items() if share >= NOTABLE_SHARE] or present[:3]
    subject, float_name = subject_variable(facts), float_variable(facts)
    script = facts.target.file.rsplit("/", 1)[-1] if facts.target.file else facts.target.spec
    engine = "qnnpack" if facts.environment.is_arm else "x86"
    yield dynamic_quant_low_coverage.finding(
        f"the script calls quantize_dynamic (line {call.line}), but `{subject}` has no int8 layer: quantize_dynamic "
        f"converts only {', '.join(sorted(DYNAMIC_TYPES))} (no dynamic int8 kernel exists for "
        f"{', '.join(notable[:3]) or 'its layers'}), and this model has none of them, so 0% of its time is covered "
        "and all of it still runs in fp32. Use static quantization, which converts convolutions too "
        "(`qdoctor compare` measures both).",
        module=None,
        source=call,
        evidence={
            "covered_share": 0.0,
            "dynamic_layers": [],
            "uncovered_time_by_type": dict(list(type_shares.items())[:6]),
            "layer_types": present[:8],
        },
        fix=STATIC_FIX.format(
            covered="nothing in this model",
            uncovered_types=", ".join(notable[:3]) or "all its layers",
            engine=engine,
            float_name=float_name,
            inputs=_inputs_expression(facts),
            script=script,
        ),
    )
