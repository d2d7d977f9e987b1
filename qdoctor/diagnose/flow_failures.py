"""The quantization-flow failures qdoctor recognizes by their message (qdoctor.diagnose.flow_causes maps a crash to
one of them, or to the causes it reads from the traceback): each a cause id, the message pattern, the step that
raises it, what it means and the fix. Pure data: no torch import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class KnownFailure:
    cause: str
    pattern: re.Pattern[str]
    step: str
    explanation: str
    fix: str


def _c(cause: str, pattern: str, step: str, explanation: str, fix: str) -> KnownFailure:
    return KnownFailure(cause, re.compile(pattern, re.S), step, explanation, fix)


KNOWN_FAILURES = (
    _c(
        "capture-pre-autograd-graph-removed",
        r"capture_pre_autograd_graph",
        "export",
        "torch._export.capture_pre_autograd_graph was removed from torch; PT2E models are captured with "
        "torch.export.export(...).module().",
        "exported = torch.export.export(model.eval(), example_inputs).module()\nprepared = prepare_pt2e(exported, quantizer)",
    ),
    _c(
        "export-for-training-removed",
        r"has no attribute 'export_for_training'",
        "export",
        "torch.export.export_for_training was removed from torch: torch.export.export now captures the graph "
        "PT2E quantization (prepare_pt2e / prepare_qat_pt2e) takes.",
        "exported = torch.export.export(model, example_inputs).module()\nprepared = prepare_qat_pt2e(exported, quantizer)",
    ),
    _c(
        "data-dependent-control-flow",
        r"data-dependent|GuardOnDataDependentSymNode|Dynamic control flow is not supported|"
        r"Could not guard on data-dependent",
        "export",
        "forward() branches (if/while) on the values of a tensor: torch.export captures one graph for all inputs and "
        "cannot decide such a branch at export time.",
        "# branch with torch.cond, which export captures with both sides:\n"
        "out = torch.cond(x.sum() > 0, lambda x: self.layer(x), lambda x: x, (x,))\n"
        "# or move the data-dependent decision out of forward()",
    ),
    _c(
        "prepare-needs-exported-graph",
        r"object has no attribute '(meta|graph)'",
        "prepare_pt2e",
        "prepare_pt2e (and prepare_qat_pt2e) take the GraphModule that torch.export produces, not the nn.Module itself.",
        "exported = torch.export.export(model.eval(), example_inputs).module()\nprepared = prepare_pt2e(exported, quantizer)",
    ),
    _c(
        "exported-module-eval-train",
        r"Calling (eval|train)\(\) is not supported yet",
        "eval/train",
        "A GraphModule from torch.export cannot switch modes with .eval()/.train(): call eval() on the float model "
        "before exporting, and use torchao's helpers on the exported or prepared model.",
        "model.eval()  # before torch.export.export\n"
        "from torchao.quantization.pt2e import move_exported_model_to_eval\n"
        "prepared = move_exported_model_to_eval(prepared)",
    ),
    _c(
        "static-shape-guard",
        r"Guard failed: .*size\(\)\[(\d+)\] == (\d+)|Expected input at .*shape\[(\d+)\] to be equal to (\d+)",
        "run",
        "The model was exported with static shapes: it only accepts inputs whose shape equals the example input's. "
        "A different batch size or image size fails the exported model's guard.",
        'batch = torch.export.Dim("batch")\n'
        'exported = torch.export.export(model.eval(), example_inputs, dynamic_shapes={"x": {0: batch}}).module()',
    ),
    _c(
        "fx-untraceable-forward",
        r"symbolically traced variables cannot be used as inputs to control flow|Proxy object cannot be iterated|"
        r"is not supported in FX graph mode",
        "prepare_fx",
        "prepare_fx traces forward() symbolically (torch.fx) and cannot follow Python control flow that depends on "
        "a tensor (if x.sum() > 0, for over a tensor): FX quantization needs a traceable forward.",
        "# keep the untraceable part out of the traced graph:\n"
        "from torch.ao.quantization.fx.custom_config import PrepareCustomConfig\n"
        'custom = PrepareCustomConfig().set_non_traceable_module_names(["the_submodule_with_the_if"])\n'
        "prepared = prepare_fx(model.eval(), qconfig_mapping, example_inputs, prepare_custom_config=custom)\n"
        "# or quantize with PT2E (torch.export), or eager mode with QuantStub/DeQuantStub",
    ),
    _c(
        "fx-example-inputs-required",
        r"prepare(?:_qat)?_fx\(\) missing 1 required positional argument: 'example_inputs'",
        "prepare_fx",
        "prepare_fx and prepare_qat_fx take example_inputs since torch 1.13 (a tuple of inputs the model accepts); "
        "a script written for an older release omits it.",
        "example_inputs = (torch.randn(1, 3, 224, 224),)  # one batch the model accepts\n"
        "prepared = prepare_fx(model.eval(), qconfig_mapping, example_inputs)",
    ),
    _c(
        "convert-fx-needs-prepared",
        r"incoming model must be produced by prepare_fx",
        "convert_fx",
        "convert_fx takes the model prepare_fx returned (with its observers, calibrated), not the float model or a "
        "symbolic_trace of it.",
        "prepared = prepare_fx(model.eval(), qconfig_mapping, example_inputs)\n"
        "for batch in calibration_batches:\n    prepared(*batch)\nquantized = convert_fx(prepared)",
    ),
    _c(
        "conv-padding-string",
        r"conv\w*_prepack\(\) Expected a value of type 'List\[int\]' for argument 'padding' but instead found type "
        r"'str'",
        "convert",
        "a convolution built with padding='same' or padding='valid' (a string) has no int8 version: the quantized "
        "conv's weight packing takes the padding as numbers, so convert() raises on that layer.",
        "# give the padding as numbers: 'valid' is 0; 'same' (stride 1) is (kernel_size - 1) // 2 per side\n"
        "self.conv = nn.Conv1d(in_channels, out_channels, kernel_size=80, stride=4, padding=0)  # was padding='valid'",
    ),
    _c(
        "fx-module-not-submodule",
        r"is not installed as a submodule",
        "prepare_fx",
        "forward() calls a module that is not registered as a submodule of the model (kept in a plain list or dict, "
        "or made inside forward): torch.fx can only trace modules it reaches by their attribute path.",
        "# register the modules so that torch.fx (and .to()/state_dict) sees them:\n"
        "self.blocks = nn.ModuleList(blocks)  # not a Python list\n"
        "# or keep that part out of the traced graph:\n"
        "from torch.ao.quantization.fx.custom_config import PrepareCustomConfig\n"
        'custom = PrepareCustomConfig().set_non_traceable_module_names(["encoder"])',
    ),
    _c(
        "strict-export-unsupported",
        r"torch\._dynamo\.exc\.Unsupported|Unsupported: ",
        "export",
        "torch.export(strict=True) traces forward() with TorchDynamo and hit Python it cannot capture.",
        "exported = torch.export.export(model.eval(), example_inputs, strict=False).module()",
    ),
)
