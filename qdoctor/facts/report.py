"""What a bug report's text says beyond the code that ran: the quantization steps read from its Python without
running it (qdoctor.load.static_read), and the tracebacks pasted into it (qdoctor.load.report_tracebacks). Plain
data; qdoctor.diagnose explains them."""

from __future__ import annotations

from dataclasses import dataclass, field

# StaticStep.kind
ENGINE = "engine"  # torch.backends.quantized.engine = "..." (detail: the engine)
QCONFIG = "qconfig"  # get_default_qconfig("...") and its QAT / mapping variants (detail: the backend named)
PREPARE = "prepare"  # prepare / prepare_fx / prepare_qat / prepare_qat_fx / prepare_pt2e (detail: the function)
CONVERT = "convert"  # convert / convert_fx / convert_pt2e (detail: the function)
# The functions that are the convert step (a CONVERT step), read by load.static_read and the rules alike.
CONVERT_FUNCTIONS = frozenset({"convert", "convert_fx", "convert_pt2e", "convert_to_reference_fx"})
USE = "use"  # the model called, or handed to a function (calibration, evaluation)
EVAL = "eval"  # model.eval() / model.train(False)
TRAIN = "train"  # model.train()
FUSE = "fuse"  # fuse_modules(model, ...) / model.fuse_model() (detail: the function)
DYNAMIC = "dynamic"  # quantize_dynamic(model, {layer types}) (detail: the layer types, comma-separated)
TO_CUDA = "to_cuda"  # model.cuda() / model.to("cuda")
MISSING_NAME = "missing_name"  # a name imported from torch that the installed torch lacks (detail: "module:name")
FLOAT_OP = "float_op"  # `+`, `+=`, torch.add or torch.cat in the forward() of an eager-mode model with QuantStub
CONSTRUCT = "construct"  # model = SomeModule(...) (detail: the class)
TORCHAO = "torchao"  # torchao quantize_(model, SomeConfig(...)) (detail: the config's name)
COMPILE = "compile"  # torch.compile(model) / model.compile()

QUANTIZED_FLOWS = ("convert", "convert_fx", "convert_pt2e", "quantize_dynamic", "quantize_fx")


@dataclass
class StaticStep:
    kind: str  # one of the kinds above
    line: int  # the report's line
    code: str  # the source line, stripped
    model: str | None = None  # the variable the step acts on
    result: str | None = None  # the variable it binds (None: in place)
    detail: str = ""
    # True: its top-level statement ran without raising; False: it did not run (not extracted, raised, or after
    # the block was cut); None: inside a function or class body (whether it ran is not known).
    ran: bool | None = None
    in_function: str | None = None  # the function or method it is in


@dataclass
class StaticRead:
    """The quantization steps of a report's Python, in the order of its lines, read with ``ast`` (nothing ran)."""

    steps: list[StaticStep] = field(default_factory=list)
    file: str | None = None  # the report, for locations

    def of(self, *kinds: str) -> list[StaticStep]:
        return [s for s in self.steps if s.kind in kinds]
