"""QD024 unexplained-slowdown: the report measured int8 clearly slower than float and no other finding says why.

The residual rule of slowness, as QD014 is of crashes: the rules whose findings account for a slowdown say so in
their registration (``@rule(..., explains_slowdown=True)``); the registry hands this rule their findings on the same
facts, and it reports only when there are none. It then says where the extra time goes compared with the float model
(the modules and op categories with the largest int8-minus-float difference in the two profiles), what qdoctor
checked and ruled out, and how to dig further. Its second check runs after prescription: fix-all applied every
verified fix and the fixed model still measures clearly slower than float (``@after_fixes``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from qdoctor import facts as F
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.locate import float_path, float_variable
from qdoctor.diagnose.registry import SlowdownExplanations, after_fixes, rule
from qdoctor.facts import Facts, Ratio, SourceLocation
from qdoctor.facts.prescription import FixAll

TOP = 5  # modules / ops named in the evidence
CATEGORY_NAMES = {
    F.CAT_INT8: "int8 kernels",
    F.CAT_QDQ: "quantize/dequantize",
    F.CAT_FLOAT: "float compute",
    F.CAT_OBSERVER: "observers/fake-quant",
    F.CAT_OTHER: "other",
}


def extra_by_module(facts: Facts, top: int | None = TOP) -> list[dict[str, Any]]:
    """Innermost profiled modules of the subject by int8-minus-float time (ms per forward), largest first. A module
    is matched with the same module in the float model (QuantWrapper's ``module.`` prefix removed); one the float
    model lacks (a QuantStub) counts against 0 ms."""
    if facts.profile is None or facts.float_profile is None:
        return []
    float_ms = {m.path: m.total_ms for m in facts.float_profile.modules}
    rows: list[dict[str, Any]] = []
    for timed in facts.profile.innermost_modules():
        base = float_ms.get(float_path(facts, timed.path), 0.0)
        rows.append(
            {
                "module": timed.path,
                "type": timed.type,
                "int8_ms": round(timed.total_ms, 3),
                "float_ms": round(base, 3),
                "extra_ms": round(timed.total_ms - base, 3),
            }
        )
    rows.sort(key=lambda r: (-r["extra_ms"], r["module"]))
    return [r for r in rows if r["extra_ms"] > 0][:top]


def extra_by_category(facts: Facts) -> list[dict[str, Any]]:
    """Op categories by int8-minus-float time (ms per forward), largest first (negative: time int8 saved)."""
    if facts.profile is None or facts.float_profile is None:
        return []
    rows: list[dict[str, Any]] = [
        {
            "category": CATEGORY_NAMES[c],
            "int8_ms": round(facts.profile.time_ms(c), 3),
            "float_ms": round(facts.float_profile.time_ms(c), 3),
            "extra_ms": round(facts.profile.time_ms(c) - facts.float_profile.time_ms(c), 3),
        }
        for c in F.CATEGORIES
        if facts.profile.time_ms(c) or facts.float_profile.time_ms(c)
    ]
    rows.sort(key=lambda r: -r["extra_ms"])
    return rows


def extra_by_op(facts: Facts) -> list[dict[str, Any]]:
    """The profiled ops with the largest int8-minus-float self time (ms per forward)."""
    if facts.profile is None or facts.float_profile is None:
        return []
    base = {o.name: o.self_ms for o in facts.float_profile.top_ops}
    rows: list[dict[str, Any]] = [
        {"op": o.name, "calls": o.calls, "extra_ms": round(o.self_ms - base.get(o.name, 0.0), 3)}
        for o in facts.profile.top_ops
    ]
    rows.sort(key=lambda r: -r["extra_ms"])
    return [r for r in rows if r["extra_ms"] > 0][:TOP]


def _where(modules: list[dict[str, Any]], categories: list[dict[str, Any]]) -> str:
    if not modules:
        return "no profile of both models was gathered, so qdoctor cannot say where the extra time goes"
    named = ", ".join(f"`{m['module']}` ({m['type']}, +{m['extra_ms']:.2f} ms)" for m in modules[:3])
    text = f"the extra time is mostly in {named}"
    grew = [c for c in categories if c["extra_ms"] > 0]
    if grew:
        text += "; by kind of op, in " + ", ".join(f"{c['category']} (+{c['extra_ms']:.2f} ms)" for c in grew[:2])
    return text


def _dig(facts: Facts) -> str:
    if facts.trace_files:
        files = " and ".join(f"{role} {path}" for role, path in sorted(facts.trace_files.items()))
        return f"open the profiler traces ({files}) side by side in TensorBoard or Perfetto"
    return (
        "rerun with `qdoctor check <target> --trace-dir traces/` and open the int8 and float traces side by side "
        "(tensorboard --logdir traces/, or Perfetto)"
    )


def _fix(facts: Facts) -> str:
    float_name = float_variable(facts)
    lines = [
        "# no known cause: look at where the extra time goes before changing the recipe.",
        "# qdoctor check <target> --trace-dir traces/   then: tensorboard --logdir traces/",
    ]
    # the int8 layers with the most extra time (stubs and other glue are not worth keeping in float)
    layers = [m["module"] for m in extra_by_module(facts, top=None) if _computes_in_int8(facts, m["module"])][:3]
    if layers:
        lines.append("# if the slowest int8 layers cost more than their float versions, keep them in float")
        lines.append("# (set before prepare(), then calibrate and convert again):")
        lines += [f"{float_name}{attribute_access(float_path(facts, path))}.qconfig = None" for path in layers]
    return "\n".join(lines)


def _computes_in_int8(facts: Facts, path: str) -> bool:
    info = facts.module(path)
    return info is not None and info.kind in (F.QUANTIZED, F.DYNAMIC_QUANTIZED, F.TORCHAO_QUANTIZED)


def attribute_access(path: str) -> str:
    """A module path as Python that reaches it: "units.2.dw" -> ".units[2].dw"."""
    return "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in path.split("."))


def _location(facts: Facts, modules: list[dict[str, Any]]) -> tuple[str | None, SourceLocation | None]:
    if not modules:
        return None, None
    path = modules[0]["module"]
    info = facts.module(path)
    return path, info.source if info else None


def _evidence(
    facts: Facts, ratio: Ratio, explained: SlowdownExplanations, modules: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "speedup": ratio.text(),
        "interval": ratio.method,
        **(facts.benchmark.evidence() if facts.benchmark else {}),
        "extra_by_module": modules,
        "extra_by_category": extra_by_category(facts),
        "extra_by_op": extra_by_op(facts),
        "ruled_out": [code for code, _ in explained.ruled_out],
        "not_checked": [f"{code} ({reason})" for code, reason in explained.not_checked],
        "trace_files": dict(facts.trace_files),
    }


def _ruled_out_text(explained: SlowdownExplanations) -> str:
    if not explained.ruled_out:
        return "no known cause could be checked"
    names = ", ".join(f"{name} ({code})" for code, name in explained.ruled_out)
    return f"qdoctor checked and ruled out {names}"


@rule(
    "QD024",
    "unexplained-slowdown",
    Severity.WARNING,
    "int8 measured clearly slower than float and no other finding explains it: where the extra time goes, what "
    "was ruled out, how to dig further",
    needs=("benchmark",),
    slowdown_residual=True,
)
def unexplained_slowdown(facts: Facts, explained: SlowdownExplanations) -> Iterator[Finding]:
    bench = facts.benchmark
    assert bench is not None
    ratio = bench.speedup_ratio
    # a language model's decode-step finding (QD013/QD008, evidence phase "decode") explains its decode step, not
    # the benchmark of its prompt that the header shows
    about_the_benchmark = [f for f in explained.findings if f.evidence.get("phase") != "decode"]
    if ratio is None or not bench.clearly_slower() or about_the_benchmark:
        return
    modules = extra_by_module(facts)
    module, source = _location(facts, modules)
    yield unexplained_slowdown.finding(
        f"the int8 model is {1 / ratio.value:.2f}x slower than float (speedup {ratio.text()}) and no other finding "
        f"explains it: {_where(modules, extra_by_category(facts))}. {_ruled_out_text(explained)}. To dig further, "
        f"{_dig(facts)}.",
        module=module,
        source=source,
        evidence=_evidence(facts, ratio, explained, modules),
        fix=_fix(facts),
    )


@after_fixes("QD024")
def left_slower_after_fixes(facts: Facts, fix_all: FixAll, unfixed: SlowdownExplanations) -> Iterator[Finding]:
    """Fix-all applied every verified fix and the fixed model still measures clearly slower than float, with no
    explaining finding left out of the fix: the rest of the gap is unexplained."""
    ratio = fix_all.vs_float  # float time / fixed-model time, with its interval
    if not fix_all.applied or ratio is None or not ratio.clearly_below(1.0 / F.SLOWDOWN) or unfixed.findings:
        return
    modules = extra_by_module(facts)
    module, source = _location(facts, modules)
    fixes = ", ".join(fix_all.fixes)
    if facts.treatment_round > 1:  # a treatment round's subject is the model the previous round's fixes made
        examined = f"the model examined in treatment round {facts.treatment_round}, before that round's fixes"
        where = f"In the model examined in treatment round {facts.treatment_round} (profiled before that round's fixes)"
    else:
        examined = "the model as written, before the fixes"
        where = "In the model as written (profiled before the fixes)"
    evidence = {
        **_evidence(facts, ratio, unfixed, modules),
        "after_fixes_ms": fix_all.after_ms,
        "float_ms": fix_all.float_ms,
        "fixes_applied": list(fix_all.fixes),
        "profiled": examined,
    }
    yield unexplained_slowdown.finding(
        f"after all verified fixes ({fixes}) the int8 model is still {1 / ratio.value:.2f}x slower than float "
        f"(speedup {ratio.text()}) and no other finding explains the rest. {where}, "
        f"{_where(modules, extra_by_category(facts))}. {_ruled_out_text(unfixed)}. To dig further, "
        f"{_dig(facts)}.",
        module=module,
        source=source,
        evidence=evidence,
        fix=_fix(facts),
    )
