"""QD011 missing-float-functional: `+`, `*`, torch.add, torch.cat on int8 tensors in an eager forward().

Claims function-level events only (torch functions called in a forward(), which the trace records with the user's
line); a wrong tensor reaching a leaf module is QD002's.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from collections.abc import Set as AbstractSet

from qdoctor import facts as F
from qdoctor.diagnose import crash_causes as crashes
from qdoctor.diagnose import static_steps as static
from qdoctor.diagnose.findings import Finding, Severity
from qdoctor.diagnose.registry import from_text, rule
from qdoctor.facts import Facts, TraceEvent
from qdoctor.facts import report as R

# torch function / Tensor method (short name, dunders stripped) -> the FloatFunctional method that replaces it.
FLOAT_FUNCTIONAL_FOR = {
    "add": "add",
    "iadd": "add",
    "radd": "add",
    "add_": "add",
    "mul": "mul",
    "imul": "mul",
    "rmul": "mul",
    "mul_": "mul",
    "cat": "cat",
    "concat": "cat",
    "concatenate": "cat",
    "matmul": "matmul",
    "rmatmul": "matmul",
    "mm": "matmul",
    "bmm": "matmul",
}
# Ops that may sit between the hand-written dequantize and quantize with the arithmetic (add_relu, reshapes).
_PASSIVE = {"relu", "relu_", "flatten", "view", "reshape", "contiguous", "permute", "transpose", "squeeze", "unsqueeze"}


def short_name(name: str) -> str:
    """ "Tensor.__iadd__" -> "iadd", "torch.add" -> "add", "quantized::add" -> "quantized::add"."""
    if "::" in name:
        return name
    return name.rsplit(".", 1)[-1].strip("_") or name


def _method(event: TraceEvent) -> str | None:
    base = FLOAT_FUNCTIONAL_FOR.get(short_name(event.name))
    if base in ("add", "mul") and len(event.inputs) == 1:
        return f"{base}_scalar"  # x + 1.0, x * 0.5: the other operand is a Python number
    return base


def _is_dequantize(event: TraceEvent, facts: Facts) -> bool:
    if event.kind == "module":
        info = facts.module(event.module)
        return info is not None and info.kind == F.DEQUANT_STUB and event.any_input_quantized
    return short_name(event.name) == "dequantize" and event.any_input_quantized


def _is_quantize(event: TraceEvent, facts: Facts) -> bool:
    if event.kind == "module":
        info = facts.module(event.module)
        return info is not None and info.kind == F.QUANT_STUB and event.output_quantized
    return short_name(event.name).startswith("quantize_per") and event.output_quantized


_ATTR = {"add": "skip_add", "mul": "skip_mul", "cat": "skip_cat", "matmul": "skip_matmul"}
_TORCH_CALLS = {"add": "add", "mul": "mul", "cat": "cat", "concat": "cat", "concatenate": "cat", "matmul": "matmul"}


class _UseFloatFunctional(ast.NodeTransformer):
    """Rewrites one line of forward(): `a + b`, `out += x`, `torch.cat([a, b], 1)` -> self.<ff>.<method>(...), and
    unwraps the hand-written dequantize/quantize stubs around them."""

    def __init__(self, stubs: set[str]) -> None:
        self.stubs = stubs
        self.changed = False

    def _ff(self, method: str, args: list[ast.expr], keywords: list[ast.keyword] | None = None) -> ast.Call:
        self.changed = True
        base = method.removesuffix("_scalar")
        target = ast.Attribute(ast.Attribute(ast.Name("self", ast.Load()), _ATTR[base], ast.Load()), method, ast.Load())
        return ast.Call(target, args, keywords or [])

    def _binary(self, op: ast.operator, left: ast.expr, right: ast.expr) -> ast.expr | None:
        base = "add" if isinstance(op, ast.Add) else "mul" if isinstance(op, ast.Mult) else None
        if base is None:
            return None
        if isinstance(right, ast.Constant) and isinstance(right.value, (int, float)):
            return self._ff(f"{base}_scalar", [left, right])
        if isinstance(left, ast.Constant) and isinstance(left.value, (int, float)):
            return self._ff(f"{base}_scalar", [right, left])
        return self._ff(base, [left, right])

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        self.generic_visit(node)
        return self._binary(node.op, node.left, node.right) or node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.stmt:
        self.generic_visit(node)
        load = ast.Name(node.target.id, ast.Load()) if isinstance(node.target, ast.Name) else node.target
        call = self._binary(node.op, load, node.value)
        return ast.Assign([node.target], call, lineno=node.lineno) if call is not None else node

    def visit_Call(self, node: ast.Call) -> ast.expr:
        self.generic_visit(node)
        func = node.func
        if (  # self.dq_a(x) / self.requant(x) around the op: the FloatFunctional works on int8 directly
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "self"
            and func.attr in self.stubs
            and len(node.args) == 1
        ):
            self.changed = True
            return node.args[0]
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "torch":
            method = _TORCH_CALLS.get(func.attr)
            if method is not None:
                return self._ff(method, list(node.args), list(node.keywords))
        return node


def rewrite_line(code: str, stubs: AbstractSet[str] = frozenset()) -> str | None:
    """The line of forward() with its int8 arithmetic done by FloatFunctional, or None when it cannot be parsed."""
    try:
        tree = ast.parse(code.strip())
    except SyntaxError:
        return None
    transformer = _UseFloatFunctional(set(stubs))
    tree = ast.fix_missing_locations(transformer.visit(tree))
    return ast.unparse(tree) if transformer.changed else None


def _stub_names(facts: Facts, owner: str) -> set[str]:
    """Names of the Quant/DeQuant stubs that are direct children of the module whose forward() holds the op."""
    prefix = owner + "." if owner else ""
    return {
        m.path[len(prefix) :]
        for m in facts.modules_of_kind(F.QUANT_STUB, F.DEQUANT_STUB)
        if m.path.startswith(prefix) and "." not in m.path[len(prefix) :]
    }


def _fix(event: TraceEvent, method: str, facts: Facts, stubs: AbstractSet[str] = frozenset()) -> str:
    code = event.source.code if event.source else ""
    owner = facts.module(event.module)
    if owner is None:
        where = "the model's"
    else:
        where = f"`{event.module}` ({owner.type})" if event.module else f"`{owner.type}`"
    attr = _ATTR[method.removesuffix("_scalar")]
    rewritten = rewrite_line(code, stubs) if code else None
    lines = [
        f"# in {where} __init__ (one FloatFunctional per call site: it observes its own scale):",
        f"self.{attr} = torch.ao.nn.quantized.FloatFunctional()",
    ]
    if rewritten:
        lines += [f"# in forward(), instead of `{code.split('  #')[0]}`:", rewritten]
    else:
        example = {
            "cat": "self.skip_cat.cat([a, b], dim=1)",
            "add_scalar": "self.skip_add.add_scalar(a, 1.0)",
            "mul_scalar": "self.skip_mul.mul_scalar(a, 0.5)",
        }.get(method, f"self.{attr}.{method}(a, b)")
        lines += [f"# in forward(), instead of `{code or 'a + b'}`:", example]
    lines.append("# then prepare, calibrate and convert again (convert makes it an int8 QFunctional)")
    return "\n".join(lines)


@rule(
    "QD011",
    "missing-float-functional",
    Severity.ERROR,
    "+, *, torch.add, torch.cat on int8 tensors in forward() without nn.quantized.FloatFunctional",
    needs=("modules", "trace"),
    owns=(crashes.INT8_AND_FLOAT_IN_FUNCTION, crashes.FLOAT_INTO_INT8_FUNCTION, crashes.INT8_INTO_ATEN_FUNCTION),
)
def missing_float_functional(facts: Facts) -> Iterator[Finding]:
    trace = facts.trace
    assert trace is not None
    crash = trace.crash
    crashed_event = None
    if crash is not None:
        cause = crashes.classify(crash, facts)
        event = crashes.raising_event(facts, crash)
        if cause is not None and missing_float_functional.owns_cause(cause.cause) and event is not None:
            crashed_event = event
            yield _crash_finding(facts, event, cause, crash)
    for other in crashes.distinct_crashes(facts):
        if other is crash and crashed_event is not None:
            continue
        cause = crashes.classify(other, facts)
        if cause is not None and missing_float_functional.owns_cause(cause.cause):
            yield _untraced_crash_finding(facts, other, cause)
    yield from _cat_findings(facts, skip=crashed_event)
    yield from _round_trip_findings(facts)


_OP_METHOD = {
    "add": "add",
    "mul": "mul",
    "cat": "cat",
    "_cat": "cat",
    "mm": "matmul",
    "bmm": "matmul",
    "matmul": "matmul",
}
_LIBRARY_FIX = """\
# `{code}` is in {library}, which you cannot edit: quantize a variant written for eager mode
# (torchvision.models.quantization.* have FloatFunctional and QuantStub/DeQuantStub built in), e.g.
#   model = torchvision.models.quantization.resnet18(weights=None, quantize=False).eval()
#   model.fuse_model()
# or quantize with FX graph mode, which handles `+` and torch.cat on int8 tensors without editing forward():
#   prepared = torch.ao.quantization.quantize_fx.prepare_fx(model.eval(), qconfig_mapping, example_inputs)"""


def _untraced_crash_finding(facts: Facts, crash: F.CrashInfo, cause: crashes.KnownCrash) -> Finding:
    """A crash with this rule's cause that the trace does not place (the script raised it in its own forward or in
    a library's): explained from its message and traceback."""
    op = (cause.op or "").split("::")[-1].split(".")[0]
    method = _OP_METHOD.get(op)
    library = crashes.library_frame(crash, facts)
    source = crashes.user_line(crash, facts) or crashes.crash_source(crash, facts)
    code = library.code if library else (source.code if source else "")
    if cause.cause == crashes.FLOAT_INTO_INT8_FUNCTION:
        message = (
            f"{cause.op or 'an int8 op'} (a converted FloatFunctional) received a float tensor "
            f"({crashes.short_message(crash, 120)}): an operand was dequantized before it, or never quantized."
        )
        fix = "# keep both operands int8 up to the FloatFunctional call, or quantize the float operand with a QuantStub"
    elif cause.cause == crashes.INT8_AND_FLOAT_IN_FUNCTION or method is not None:
        what = f"`{code}`" if code else f"`{cause.op}`"
        message = (
            f"{what} runs on int8 tensors and raises ({crashes.short_message(crash, 120)}): eager mode has no int8 "
            f"`{op or 'op'}`; use a `torch.ao.nn.quantized.FloatFunctional` and call its `{method or 'add'}`, which "
            "convert() turns into an int8 kernel with its own calibrated scale."
        )
        rewritten = rewrite_line(code, set()) if code else None
        fix = f"# in __init__: self.skip_{method or 'add'} = torch.ao.nn.quantized.FloatFunctional()\n" + (
            f"# in forward(), instead of `{code}`:\n{rewritten}"
            if rewritten
            else f"self.skip_{method or 'add'}.{method or 'add'}(a, b)"
        )
    else:
        message = (
            f"`{code or cause.op}` gives an int8 tensor to {cause.op}, which has no int8 kernel "
            f"({crashes.short_message(crash, 120)}): dequantize before it and quantize after it (or keep that part "
            "of the model in float)."
        )
        fix = (
            "x = self.dequant_before(x)  # a DeQuantStub made in __init__\n"
            f"{code or 'x = float_only_op(x)'}\nx = self.quant_after(x)  # a QuantStub, when int8 layers follow"
        )
    if library is not None:
        message += " " + crashes.sites_text(crash, facts)
        fix = _LIBRARY_FIX.format(code=library.code or cause.op, library=crashes.short_path(library.file)) + "\n" + fix
    return missing_float_functional.finding(
        message,
        module=crash.module,
        source=source,
        evidence={"crash": crashes.short_message(crash), "phase": crash.phase, **crashes.site_evidence(crash, facts)},
        fix=fix,
    )


def _crash_finding(facts: Facts, event: TraceEvent, cause: crashes.KnownCrash, crash: F.CrashInfo) -> Finding:
    method = _method(event)
    library = crashes.library_frame(crash, facts)
    source = event.source or crashes.crash_source(crash, facts)
    if library is not None:  # raised in a library's forward(): the user's line is where the script called the model
        source = crashes.user_line(crash, facts) or source
    evidence = {
        "crash": crashes.short_message(crash),
        "function": event.name,
        "input_dtypes": [t.dtype for t in event.inputs],
        **crashes.site_evidence(crash, facts),
    }
    where = f"in `{event.module}`.forward()" if event.module else "in forward()"
    shown = library.code if library is not None else (source.code if source else "")
    what = f"`{shown}` {where} calls `{event.name}`" if shown else f"`{event.name}` {where}"
    if cause.cause == crashes.FLOAT_INTO_INT8_FUNCTION:
        message = (
            f"`{event.name}` {where} is an int8 kernel (a converted FloatFunctional) but received a float tensor "
            f"({', '.join(evidence['input_dtypes'])}): the tensor was dequantized before it, or never quantized."
        )
        fix = (
            "# keep both operands int8 up to the FloatFunctional call: remove the DeQuantStub or\n"
            "# .dequantize() before it, or quantize the float operand with a QuantStub of its own\n"
            "# (in __init__: self.quant_skip = torch.ao.quantization.QuantStub())\n"
            "b = self.quant_skip(b)\n"
            f"{source.code if source else 'out = self.ff.add(a, b)'}"
        )
    elif method is not None:
        mixed = cause.cause == crashes.INT8_AND_FLOAT_IN_FUNCTION
        message = (
            f"{what} on "
            + ("an int8 tensor and a float operand" if mixed else "int8 tensors")
            + f" and raises: eager mode has no int8 `{short_name(event.name)}`; use a "
            f"`torch.ao.nn.quantized.FloatFunctional` and call its `{method}`, which convert() turns into an int8 "
            "kernel with its own calibrated scale."
        )
        fix = _fix(event, method, facts)
        if mixed and not method.endswith("_scalar"):
            fix = "# quantize the float tensor operand first (a QuantStub), then:\n" + fix
    else:
        message = (
            f"{what} on an int8 tensor; it has no int8 kernel, so the model raises: "
            "dequantize before it and quantize after it (or keep that part of the model in float)."
        )
        fix = (
            "# in __init__: self.dequant_before = torch.ao.quantization.DeQuantStub()\n"
            "#              self.quant_after = torch.ao.quantization.QuantStub()\n"
            "x = self.dequant_before(x)\n"
            f"{source.code if source else 'x = float_only_op(x)'}\n"
            "x = self.quant_after(x)"
        )
    if library is not None:
        message += " " + crashes.sites_text(crash, facts)
        rewritten = rewrite_line(library.code) if library.code else None
        fix = _LIBRARY_FIX.format(code=library.code or event.name, library=crashes.short_path(library.file))
        if rewritten:
            fix += f"\n# or, in your own copy of that forward(), instead of `{library.code}`:\n{rewritten}"
    return missing_float_functional.finding(message, module=event.module, source=source, evidence=evidence, fix=fix)


def _cat_findings(facts: Facts, skip: TraceEvent | None) -> Iterator[Finding]:
    """torch.cat on int8 tensors runs, but requantizes every input to the first input's scale and zero_point."""
    assert facts.trace is not None
    seen: set[tuple] = set()
    for event in facts.trace.events:
        if event is skip or event.kind != "function" or short_name(event.name) not in ("cat", "concat", "concatenate"):
            continue
        quantized = [t for t in event.inputs if t.quantized]
        if len(quantized) < 2 or not event.output_quantized:
            continue
        key = (event.module, event.source.line if event.source else None)
        if key in seen:
            continue
        seen.add(key)
        yield missing_float_functional.finding(
            f"`torch.cat` on {len(quantized)} int8 tensors in "
            + (f"`{event.module}`.forward()" if event.module else "forward()")
            + ": it runs, but every input is requantized to the first input's scale and zero_point, so values of "
            "the others outside that range are clipped. FloatFunctional.cat uses a scale calibrated for the output.",
            module=event.module,
            source=event.source,
            evidence={"function": event.name, "input_dtypes": [t.dtype for t in event.inputs]},
            fix=_fix(event, "cat", facts),
            severity=Severity.WARNING,
        )


def _round_trip_findings(facts: Facts) -> Iterator[Finding]:
    """int8 -> dequantize -> add/mul/cat in float -> quantize -> int8, written by hand around the op."""
    assert facts.trace is not None
    dequantized = False
    ops: list[TraceEvent] = []
    for event in facts.trace.events:
        if _is_dequantize(event, facts):
            if not dequantized:  # several dequantized operands (a + b) may precede one op
                ops = []
            dequantized = True
            continue
        if not dequantized:
            continue
        if event.kind == "function" and _method(event) is not None and not event.any_input_quantized:
            ops.append(event)
            continue
        if event.kind == "function" and short_name(event.name) in _PASSIVE:
            continue
        if _is_quantize(event, facts) and ops:
            for op in ops:
                yield _round_trip_finding(facts, op, event)
        dequantized, ops = False, []


def _round_trip_finding(facts: Facts, op: TraceEvent, quantize: TraceEvent) -> Finding:
    method = _method(op) or "add"
    requant = f"`{quantize.module}`" if quantize.kind == "module" else f"`{quantize.name}`"
    return missing_float_functional.finding(
        f"`{op.name}` in "
        + (f"`{op.module}`.forward()" if op.module else "forward()")
        + f" is wrapped in a hand-written dequantize -> float {short_name(op.name)} -> quantize ({requant}) round "
        "trip: it works, but pays two conversions and a float op on every call. A FloatFunctional "
        f"`{method}` runs it in int8.",
        module=op.module,
        source=op.source,
        evidence={"function": op.name, "requantized_by": quantize.name},
        fix=_fix(op, method, facts, _stub_names(facts, op.module)),
        severity=Severity.WARNING,
    )


@from_text("QD011")
def float_ops_in_text(facts: Facts) -> Iterator[Finding]:
    """The report's text adds or concatenates tensors with `+` / torch.cat in the forward() of an eager model with
    QuantStub: once converted, those tensors are int8, and eager mode has no int8 `+`."""
    for step in static.steps(facts, R.FLOAT_OP):
        if not static.unverified(step, facts):
            continue
        yield missing_float_functional.finding(
            f"`{step.code}` (line {step.line}) in {step.model}.forward() uses `{step.detail}` on what QuantStub "
            "made int8 after convert: eager-mode quantization swaps modules, not operators, so this raises on "
            "quantized tensors (static: read, not run).",
            source=static.where(step, facts),
            evidence=static.evidence(step, op=step.detail),
            fix="self.skip_add = torch.ao.nn.quantized.FloatFunctional()  # in __init__\n"
            "out = self.skip_add.add(a, b)  # in forward(); .cat([a, b]) for torch.cat",
            severity=Severity.WARNING,
        )
