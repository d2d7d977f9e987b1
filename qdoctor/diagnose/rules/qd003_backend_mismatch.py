"""QD003 backend-mismatch: the quantized engine is wrong for this CPU, or the qconfig was made for another engine."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

from qdoctor import facts as F
from qdoctor.diagnose import crash_causes as crashes
from qdoctor.diagnose import static_steps as static
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.locate import (
    first_compute,
    fix_engine,
    float_variable,
    is_graph_module,
    script_line,
    subject_variable,
)
from qdoctor.diagnose.registry import from_text, rule
from qdoctor.facts import Facts, ModuleInfo, SourceLocation
from qdoctor.facts import report as R
from qdoctor.facts.location import first_line

X86, QNNPACK, ONEDNN = "x86/fbgemm", "qnnpack", "onednn"
ENGINE_FAMILY = {"x86": X86, "fbgemm": X86, "qnnpack": QNNPACK, "onednn": ONEDNN}

# get_default_qconfig("qnnpack"), get_default_qat_qconfig('fbgemm'), get_default_qconfig_mapping("x86"), ...
_QCONFIG_CALL = r"get_default_(?:qat_)?qconfig(?:_mapping)?\(\s*(?:backend\s*=\s*)?['\"](\w+)['\"]"
_ENGINE_ASSIGNMENT = r"backends\.quantized\.engine\s*=(?!=)"

# Measured on a two-convolution CNN, 224x224, batch 1 (bench/rule_effects.py; see rules/QD003-backend-mismatch.md).
MEASURED = (
    "on an x86 CPU qnnpack ran a two-convolution CNN at 224x224 about 7x slower than the x86 engine in CPU time on one "
    "thread (54 vs 7.3 ms) and about 15x slower in wall time on two (72 vs 4.7 ms)"
)


def _script_backends(facts: Facts) -> list[tuple[str, int]]:
    """(backend, line) of every get_default_*qconfig*("backend") call in the user's script, in file order."""
    found = []
    for number, line in enumerate(facts.target.script_text.splitlines(), start=1):
        for match in re.finditer(_QCONFIG_CALL, line.split("#", 1)[0]):
            found.append((match.group(1).lower(), number))
    return found


def qconfig_family(facts: Facts) -> tuple[str | None, list[str]]:
    """Which engine's default qconfig the model was quantized with, and the evidence for it.

    Before convert the modules carry their qconfig (observer classes, reduce_range, weight qscheme). After convert only
    the result is visible: per-tensor weights (qnnpack's default; x86/fbgemm and onednn use per-channel) and, where a
    zero_point is above 127, activations that used the full 0..255 range (reduce_range=False: qnnpack or onednn). The
    script's own get_default_qconfig("...") call settles what the weights alone cannot.
    """
    modules = facts.modules or []
    evidence: list[str] = []
    families = Counter(
        m.qconfig.backend_family for m in modules if m.is_leaf and m.qconfig is not None and m.qconfig.backend_family
    )
    if families:
        family, count = families.most_common(1)[0]
        evidence.append(f"{count} module qconfig(s) match the {family} defaults")
        return family, evidence
    fx = _fx_family(facts)
    if fx is not None:
        return fx[0], [fx[1]]
    scripted = _script_backends(facts)
    script_family = ENGINE_FAMILY.get(scripted[-1][0]) if scripted else None
    if scripted:
        evidence.append(f"the script calls get_default_qconfig('{scripted[-1][0]}') (line {scripted[-1][1]})")
    weighted = [m for m in modules if m.kind == F.QUANTIZED and m.weight_qscheme]
    if not weighted:
        return script_family, evidence
    per_tensor = all("per_tensor" in (m.weight_qscheme or "") for m in weighted)
    full_range = [m.path for m in modules if m.kind in (F.QUANTIZED, F.QUANT_STUB) and (m.zero_point or 0) > 127]
    evidence.append(f"converted weights are {'per-tensor' if per_tensor else 'per-channel'} ({len(weighted)} modules)")
    if full_range:
        evidence.append(f"zero_point > 127 on {full_range[0]}: activations use 0..255 (reduce_range=False)")
    if per_tensor and (full_range or script_family == QNNPACK):
        return QNNPACK, evidence
    if not per_tensor and script_family in (X86, ONEDNN):
        return script_family, evidence
    if not per_tensor and full_range and script_family is None:
        return ONEDNN, evidence
    return None, evidence  # e.g. the legacy per-tensor default_qconfig: no backend's default


def _fx_family(facts: Facts) -> tuple[str, str] | None:
    """(family, evidence) from the FX configuration the script used: its BackendConfig when it names an engine
    (get_qnnpack_backend_config() is "qnnpack"), else its QConfigMapping's qconfig."""
    flow = facts.flow
    if flow is None:
        return None
    named = ENGINE_FAMILY.get(flow.fx_backend_config or "")
    if named is not None:
        return named, f"the FX backend_config is `{flow.fx_backend_config}`'s"
    qconfig = flow.fx_qconfig
    if qconfig is not None and qconfig.backend_family:
        return qconfig.backend_family, f"the FX qconfig_mapping's qconfig matches the {qconfig.backend_family} defaults"
    return None


def _signed_activations(facts: Facts) -> bool:
    """The qconfig quantizes activations to signed qint8 (qnnpack's symmetric configs), eager or FX."""
    qconfigs = [m.qconfig for m in facts.modules or [] if m.is_leaf and m.qconfig is not None]
    if facts.flow is not None and facts.flow.fx_qconfig is not None:
        qconfigs.append(facts.flow.fx_qconfig)
    return any(q.activation_dtype == "torch.qint8" for q in qconfigs)


def _engine_source(facts: Facts) -> SourceLocation | None:
    return script_line(facts, _ENGINE_ASSIGNMENT, last=True) or script_line(facts, _QCONFIG_CALL, last=True)


def _requantize_fix(facts: Facts, engine: str, why: str, note: str = "") -> str:
    """Quantize again from the float model under ``engine`` with its own qconfig."""
    float_name, subject = float_variable(facts), subject_variable(facts)
    head = f"# {why}\n" + (f"# ({note})\n" if note else "") + f'torch.backends.quantized.engine = "{engine}"\n'
    tail = "# convert() packs the weights for the engine in force: switching the engine afterwards is not enough\n"
    if is_graph_module(facts):
        return (
            head
            + "from torch.ao.quantization import get_default_qconfig_mapping\n"
            + "from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx\n"
            + f'prepared = prepare_fx({float_name}.eval(), get_default_qconfig_mapping("{engine}"), example_inputs)\n'
            + "# ... calibrate `prepared` ...\n"
            + tail
            + f"{subject} = convert_fx(prepared)"
        )
    return (
        head
        + f'{float_name}.qconfig = torch.ao.quantization.get_default_qconfig("{engine}")\n'
        + f"prepared = torch.ao.quantization.prepare({float_name})\n"
        + "# ... calibrate `prepared` ...\n"
        + tail
        + f"{subject} = torch.ao.quantization.convert(prepared)"
    )


def _anchor(facts: Facts) -> ModuleInfo | None:
    quantized = facts.modules_of_kind(F.QUANTIZED, F.QAT, F.DYNAMIC_QUANTIZED)
    return first_compute(quantized, facts) if quantized else None


def _cpu(facts: Facts) -> str:
    env = facts.environment
    isa = "/".join(f for f in env.cpu_isa if f.startswith(("avx512_vnni", "avx_vnni", "amx", "asimddp", "i8mm")))
    return f"{env.machine} CPU" + (f" with {isa}" if isa else "")


@rule(
    "QD003",
    "backend-mismatch",
    Severity.WARNING,
    "the quantized engine is wrong for this CPU, or the qconfig was made for another engine than the one in use",
    needs=("modules",),
    explains_slowdown=True,
    owns=(crashes.NO_QUANTIZED_ENGINE,),
)
def backend_mismatch(facts: Facts) -> Iterator[Finding]:
    env = facts.environment
    engine = env.quantized_engine
    best = fix_engine(facts)
    crash = facts.crash
    known = crashes.classify(crash, facts) if crash is not None else None
    if crash is not None and known is not None and backend_mismatch.owns_cause(known.cause):
        op = known.op  # the operator that found no engine, when the message names it
        info = facts.module(crash.module) if crash.module else None
        yield backend_mismatch.finding(
            f"no usable quantized engine: torch raised `{first_line(crash.message)[:160]}`"
            + (f" for {op}" if op else "")
            + f". The engine in force is `{engine}`; this build supports {', '.join(env.supported_engines) or 'none'}. "
            f"Select `{best}`, the int8 engine for this {_cpu(facts)}, before prepare/convert.",
            module=crash.module,
            source=info.source if info and info.source else _engine_source(facts),
            evidence={
                "crash": f"{crash.type}: {first_line(crash.message)[:200]}",
                "engine": engine,
                "supported_engines": env.supported_engines,
                "recommended_engine": best,
            },
            fix=_requantize_fix(facts, best, f"supported by this build, and the int8 engine for this {_cpu(facts)}"),
            severity=Severity.ERROR,
        )
        return

    family, family_evidence = qconfig_family(facts)
    anchor = _anchor(facts)
    engine_family = ENGINE_FAMILY.get(engine)
    wrong_for_cpu = (env.is_x86 and engine == "qnnpack") or (env.is_arm and engine_family in (X86, ONEDNN))
    bench = facts.benchmark
    timing = {}
    if bench and bench.subject:
        timing["subject_ms"] = round(bench.subject.median_ms, 3)
    if bench and bench.float_baseline:
        timing["float_ms"] = round(bench.float_baseline.median_ms, 3)

    if wrong_for_cpu:
        cost = MEASURED if env.is_x86 else "the x86 engines' kernels are written for x86; qnnpack is the ARM engine"
        also = ""
        if family is not None and family != ENGINE_FAMILY.get(best):
            also = f" The qconfig is {family}'s too: switch it with the engine and re-convert."
        yield backend_mismatch.finding(
            f"the quantized engine is `{engine}` on this {_cpu(facts)}: use `{best}`; {cost}.{also} Switching the "
            "engine alone is not enough for a converted model: its weights were packed for the engine in force at "
            "convert(), so quantize again (or load its state_dict again) under the new engine.",
            module=anchor.path if anchor else None,
            source=_engine_source(facts) or (anchor.source if anchor else None),
            evidence={
                "engine": engine,
                "recommended_engine": best,
                "machine": env.machine,
                "cpu_isa": env.cpu_isa,
                "qconfig_family": family,
                "qconfig_evidence": family_evidence,
                **timing,
            },
            fix=_requantize_fix(facts, best, f"the int8 engine for this {_cpu(facts)}"),
        )
        return

    if family is None or engine_family is None or family == engine_family:
        return
    if family == ONEDNN and engine_family == X86 and env.has_vnni:
        return  # onednn's qconfig differs from x86's only by reduce_range, which VNNI CPUs do not need
    severity = Severity.INFO
    note = ""
    leads_to: tuple[str, ...] = ()
    if engine_family == QNNPACK and family == X86:
        risk = "reduce_range=True activations give up one bit of resolution that qnnpack does not need"
    elif engine_family != X86:
        # x86's qconfig under onednn (one bit of activation resolution), qnnpack's under onednn (full range either
        # way): nothing measured that would be worth a finding
        return
    else:  # a qnnpack or onednn qconfig under the x86/fbgemm engine
        if _signed_activations(facts):
            severity = Severity.WARNING
            leads_to = ("QD016",)
            risk = (
                "its activations are signed qint8 (symmetric), which the x86/fbgemm int8 kernels do not take "
                "(they need quint8 activations): under this engine the converted model cannot run its int8 layers"
            )
        elif env.has_vnni:
            risk = (
                "on a VNNI CPU like this one that is harmless (on a two-convolution CNN at 224x224 it ran as fast and "
                "was at least as accurate, since VNNI needs no 7-bit activations), but it is no "
                "speed fix either, and on x86 CPUs without VNNI its full-range activations saturate the x86 "
                "kernels' 16-bit sums"
            )
            note = 'on VNNI CPUs only, get_default_qconfig("onednn") keeps 8-bit activations with per-channel weights'
        else:
            severity = Severity.WARNING
            risk = (
                "this CPU has no VNNI, so the x86 kernels add u8 x s8 products in saturating 16-bit sums "
                "(vpmaddubsw) and full-range activations (reduce_range=False) overflow them: accuracy suffers"
            )
    target_engine = engine if ENGINE_FAMILY.get(best) == engine_family else best
    yield backend_mismatch.finding(
        f"the qconfig was made for {family} but the engine in use is `{engine}` ({engine_family}): {risk}. "
        f'Quantize again with get_default_qconfig("{target_engine}") under the `{target_engine}` engine.',
        module=anchor.path if anchor else None,
        source=script_line(facts, _QCONFIG_CALL, last=True) or (anchor.source if anchor else None),
        evidence={
            "engine": engine,
            "qconfig_family": family,
            "qconfig_evidence": family_evidence,
            "recommended_engine": best,
            "cpu_isa": env.cpu_isa,
            **timing,
        },
        fix=_requantize_fix(facts, target_engine, f"the engine you run, and its own qconfig ({_cpu(facts)})", note),
        severity=severity,
        leads_to=leads_to,
    )


@from_text("QD003")
def qnnpack_in_text(facts: Facts) -> Iterator[Finding]:
    """The report's text selects the qnnpack engine or qconfig, and this machine is x86."""
    if not facts.environment.is_x86:
        return
    for step in static.steps(facts, R.ENGINE, R.QCONFIG):
        if step.detail != "qnnpack" or not static.unverified(step, facts):
            continue
        what = "engine" if step.kind == R.ENGINE else "qconfig"
        yield backend_mismatch.finding(
            f"`{step.code}` (line {step.line}) selects the qnnpack {what} on an {_cpu(facts)}: qnnpack is the "
            "ARM engine; on x86 the x86 (fbgemm/onednn) kernels are the fast ones (static: read, not run).",
            source=static.where(step, facts),
            evidence=static.evidence(step, machine=facts.environment.machine),
            fix="torch.backends.quantized.engine = 'x86'\nmodel.qconfig = torch.ao.quantization.get_default_qconfig('x86')",
            severity=Severity.WARNING,
        )
        return
