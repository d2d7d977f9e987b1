"""One hand-built report that every reporter's snapshot renders: fixed timings, fixed machine, fixed paths.

It has what a real report can have: a benchmark with spread, a profile of the subject and of the float baseline,
modules that ran on int8 and on float, findings of every severity (one with a source line and a verified fix, one
that could not be verified, one about the whole process with no module), a skipped rule, notes and a "fix all".
"""

from __future__ import annotations

from qdoctor import facts as F
from qdoctor.diagnose.findings import Finding, Location, Severity, SkippedRule
from qdoctor.facts.prescription import Applicability, FixAll, Prescription, Verified
from qdoctor.report.model import Report
from qdoctor.report.ruledocs import RuleDoc, parse

ROOT = "/project"  # reporters show paths relative to this
MODEL_FILE = "/project/models/net.py"
VERSION = "0.0.0-snapshot"


def _t(shape: list[int], quantized: bool) -> F.TensorInfo:
    return F.TensorInfo("torch.quint8" if quantized else "torch.float32", shape, quantized)


def _module_event(path: str, type_: str, q_in: bool, q_out: bool) -> F.TraceEvent:
    return F.TraceEvent("module", path, path, type_, [_t([1, 16, 32, 32], q_in)], [_t([1, 16, 32, 32], q_out)])


def sample_facts() -> F.Facts:
    target = F.Target(
        spec="models/net.py",
        file=MODEL_FILE,
        subject_name="quantized_model",
        float_name="float_model",
        inputs_name="example_inputs",
        inputs_origin="contract",
        inputs=[F.TensorInfo("torch.float32", [1, 3, 64, 64], False)],
        warnings=["UserWarning: Please use quant_min and quant_max to specify the range for observers."],
        has_calibration_data=True,
    )
    environment = F.Environment(
        torch_version="2.14.1+cpu",
        python_version="3.11.7",
        platform="Linux-6.1-x86_64-with-glibc2.36",
        machine="x86_64",
        cpu_model="Example CPU @ 2.40GHz",
        cpu_isa=["avx2", "avx512f", "avx512_vnni"],
        cpu_capability="AVX512",
        cpu_count=4,
        quantized_engine="qnnpack",
        supported_engines=["qnnpack", "onednn", "x86", "fbgemm"],
        num_threads=1,
        num_interop_threads=4,
        thread_env={"OMP_NUM_THREADS": "1"},
    )
    src = F.SourceLocation(MODEL_FILE, 14, "self.conv2 = nn.Conv2d(16, 16, 3, padding=1)")
    modules = [
        F.ModuleInfo("", "Net", "models.net", F.CONTAINER, False, False),
        F.ModuleInfo("quant", "Quantize", "torch.ao.nn.quantized.modules", F.QUANT_STUB, True, False),
        F.ModuleInfo(
            "conv1",
            "ConvReLU2d",
            "torch.ao.nn.intrinsic.quantized",
            F.QUANTIZED,
            True,
            False,
            scale=0.021,
            zero_point=0,
        ),
        F.ModuleInfo("dequant", "DeQuantize", "torch.ao.nn.quantized.modules", F.DEQUANT_STUB, True, False),
        F.ModuleInfo("conv2", "Conv2d", "torch.nn.modules.conv", F.FLOAT, True, False, source=src),
        F.ModuleInfo("bn2", "BatchNorm2d", "torch.nn.modules.batchnorm", F.FLOAT, True, False),
        F.ModuleInfo("relu2", "ReLU", "torch.nn.modules.activation", F.FLOAT, True, False),
        F.ModuleInfo("fc", "Linear", "torch.nn.modules.linear", F.FLOAT, True, False),
    ]
    trace = F.Trace(
        events=[
            _module_event("quant", "Quantize", False, True),
            _module_event("conv1", "ConvReLU2d", True, True),
            _module_event("dequant", "DeQuantize", True, False),
            _module_event("conv2", "Conv2d", False, False),
            _module_event("bn2", "BatchNorm2d", False, False),
            _module_event("relu2", "ReLU", False, False),
            F.TraceEvent("function", "flatten", "", "function", [_t([1, 16, 1, 1], False)], [_t([1, 16], False)]),
            _module_event("fc", "Linear", False, False),
        ],
        output=[F.TensorInfo("torch.float32", [1, 10], False)],
    )

    def categories(ms: dict[str, float]) -> list[F.CategoryTime]:
        total = sum(ms.values())
        return [F.CategoryTime(c, ms.get(c, 0.0), ms.get(c, 0.0) / total) for c in F.CATEGORIES]

    subject_ms = {F.CAT_INT8: 1.20, F.CAT_QDQ: 0.90, F.CAT_FLOAT: 2.40, F.CAT_OTHER: 0.10}
    float_ms = {F.CAT_FLOAT: 3.10, F.CAT_OTHER: 0.10}
    profile = F.Profile(
        runs=10,
        total_ms=sum(subject_ms.values()),
        categories=categories(subject_ms),
        top_ops=[
            F.OpTime("aten::mkldnn_convolution", F.CAT_FLOAT, 1.9, 1),
            F.OpTime("quantized::conv2d_relu", F.CAT_INT8, 1.1, 1),
            F.OpTime("aten::quantize_per_tensor", F.CAT_QDQ, 0.6, 1),
        ],
        modules=[
            F.ModuleTime("conv2", "Conv2d", F.FLOAT, 1.95),
            F.ModuleTime("conv1", "ConvReLU2d", F.QUANTIZED, 1.15),
            F.ModuleTime("quant", "Quantize", F.QUANT_STUB, 0.62),
            F.ModuleTime("bn2", "BatchNorm2d", F.FLOAT, 0.31),
            F.ModuleTime("dequant", "DeQuantize", F.DEQUANT_STUB, 0.28),
            F.ModuleTime("relu2", "ReLU", F.FLOAT, 0.12),
            F.ModuleTime("fc", "Linear", F.FLOAT, 0.05),
        ],
    )
    float_profile = F.Profile(
        runs=10,
        total_ms=sum(float_ms.values()),
        categories=categories(float_ms),
        top_ops=[F.OpTime("aten::mkldnn_convolution", F.CAT_FLOAT, 2.6, 2)],
        modules=[F.ModuleTime("conv1", "Conv2d", F.FLOAT, 1.4), F.ModuleTime("conv2", "Conv2d", F.FLOAT, 1.3)],
    )
    bench = F.Benchmarks(
        subject=F.Timing(median_ms=4.812, iqr_ms=0.231, runs=42, number_per_run=10, num_threads=1, noisy=False),
        float_baseline=F.Timing(median_ms=3.274, iqr_ms=0.402, runs=55, number_per_run=10, num_threads=1, noisy=True),
        paired_speedup=F.Ratio(0.680, 0.641, 0.702, "paired-bootstrap"),
    )
    measurement = F.Contention(
        cores_allowed=2,
        load_average=1.2,
        busy_cores_before=0.9,
        busy_cores_during=0.05,
        threads_requested=2,
        threads_used=1,
        cpus_used=[1],
        action="measured on 1 thread, pinned to CPU 1: 1 of 2 cores was busy",
    )
    return F.Facts(
        target=target,
        environment=environment,
        modules=modules,
        float_modules=None,
        trace=trace,
        profile=profile,
        float_profile=float_profile,
        benchmark=bench,
        size=F.Sizes(subject_bytes=412_345, float_bytes=1_234_567),
        numerics=F.Numerics(sqnr_db=31.42),
        unavailable={"float_modules": "the sample has none"},
        measurement=measurement,
    )


def sample_report() -> Report:
    findings = [
        Finding(
            rule="QD005",
            name="float-island",
            severity=Severity.ERROR,
            message="`conv2`, `bn2`, `relu2` and `fc` run in float between `dequant` and the output: 62% of the "
            "subject's profiled time is float compute or quantize/dequantize | pipes and `backticks` stay intact.",
            location=Location(
                module="conv2", file=MODEL_FILE, line=14, code="self.conv2 = nn.Conv2d(16, 16, 3, padding=1)"
            ),
            evidence={"float_modules": ["conv2", "bn2", "relu2", "fc"], "float_share": 0.533, "none": None},
            fix='model.dequant = nn.Identity()\nmodel.qconfig = torch.ao.quantization.get_default_qconfig("x86")\n'
            "# fuse conv2+bn2+relu2, then prepare / calibrate / convert again",
            verified=Verified(
                Applicability.VERIFIED,
                before_ms=4.812,
                after_ms=1.932,
                speedup=F.Ratio(value=2.49, low=2.38, high=2.61, method="paired-bootstrap"),
                effect="faster",
                before_sqnr_db=31.42,
                after_sqnr_db=29.8,
                engine="x86",
                threads=4,
                method="rebuilt from a copy of `float_model` (the float baseline) the way the script did it, then fixed",
                steps=["fused 1 group(s)", "qconfig and engine 'x86'", "converted"],
            ),
        ),
        Finding(
            rule="QD003",
            name="wrong-engine",
            severity=Severity.WARNING,
            message="the quantized engine is `qnnpack` on an x86 CPU with AVX512-VNNI: `x86` is faster here.",
            location=Location(module=""),
            evidence={"engine": "qnnpack", "cpu_isa": ["avx2", "avx512f", "avx512_vnni"]},
            fix='torch.backends.quantized.engine = "x86"',
            verified=Verified.cannot_apply("the engine is process-wide; measured in a separate run only"),
        ),
        Finding(
            rule="QD010",
            name="thread-config",
            severity=Severity.INFO,
            message="torch runs on 1 thread (OMP_NUM_THREADS=1) on a 4-core machine.",
            location=Location(),
            evidence={"num_threads": 1, "cpu_count": 4},
        ),
    ]
    return Report(
        facts=sample_facts(),
        findings=findings,
        skipped=[
            SkippedRule("QD001", "uncalibrated-observers", "needs numerics (the sample skips it)"),
            SkippedRule(  # cannot apply to an eager model: JSON and SARIF keep it, the readable reports leave it out
                "QD012",
                "pt2e-not-lowered",
                "needs graph (graph: the subject is an eager module tree, not a graph (FX, PT2E or TorchScript))",
                applicable=False,
            ),
        ],
        notes=["inputs: taken from `example_inputs`"],
        qdoctor_version=VERSION,
        prescription=Prescription(
            fix_all=FixAll(
                applied=True,
                fixes=["QD005"],
                headline="after all fixes: 4.81 ms -> 1.70 ms (2.83x)",
                before_ms=4.812,
                after_ms=1.701,
                engine="x86",
                threads=4,
                method="rebuilt from a copy of `float_model` (the float baseline) the way the script did it, then fixed",
                steps=["fused 1 group(s)", "qconfig and engine 'x86'", "converted"],
                code="model = float_model.eval()",
                left_out={"QD003": "the engine is process-wide; measured in a separate run only"},
            )
        ),
    )


def _doc(code: str, name: str, what: str) -> RuleDoc:
    text = (
        f"# {code}: {name}\n\n## What it does\n{what}\n\n## Why is this bad?\nIt is slow.\n\n## Example\n```python\n"
        f"bad()\n```\n\n## Use instead\n```python\ngood()\n```\n\n## Fix safety\nSafe.\n\n## Measured effect\nSample.\n\n"
        "## References\n- https://pytorch.org/docs/stable/quantization.html\n"
    )
    doc = parse(text)
    assert doc is not None
    return doc


def sample_rule_docs() -> tuple[dict[str, RuleDoc], dict[str, Severity]]:
    """Fixed rule documents for the SARIF snapshot (the real ones change as rules are added and edited)."""
    docs = {
        "QD001": _doc("QD001", "uncalibrated-observers", "Finds models converted without calibration. More text."),
        "QD003": _doc("QD003", "wrong-engine", "Finds a quantized engine that is slow on this CPU."),
        "QD005": _doc("QD005", "float-island", "Finds float layers between quantized ones."),
        "QD010": _doc("QD010", "thread-config", "Finds thread settings that starve the CPU."),
    }
    severities = {"QD001": Severity.ERROR, "QD003": Severity.WARNING, "QD005": Severity.ERROR, "QD010": Severity.INFO}
    return docs, severities
