"""The crash doctor: which rule explains a crash, from its message and where it was raised (module or function).

Each rule's own findings for its crashes are tested in tests/rules/ (QD002, QD003, QD011, QD014, QD015, QD016).
"""

from __future__ import annotations

import pytest
from factsbuild import ADD_CRASH, CUDA_CRASH, crash, fev, flow_kind, make_facts, mev, mod, q

from qdoctor import facts as F
from qdoctor.diagnose.registry import owners


@pytest.mark.parametrize(
    "message, level_event, rule",
    [
        (ADD_CRASH, "function", "QD011"),
        (ADD_CRASH, "module", "QD002"),
        ("Could not run 'quantized::conv2d.new' with arguments from the 'CPU' backend. ...", "module", "QD002"),
        (CUDA_CRASH, "module", "QD015"),
        ("Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU", None, "QD015"),
        ("Torch not compiled with CUDA enabled", None, "QD015"),
        ("quantized engine NoQEngine is not supported", None, "QD003"),
        ("Didn't find engine for operation quantized::conv2d_prepack NoQEngine", None, "QD003"),
        ("Input type (c10::quint8) and bias type (float) should be the same", "module", "QD016"),
        ("mat1 and mat2 must have the same dtype, but got QUInt8 and Float", "module", "QD016"),
        ("Expected input data type QUInt8 but got QInt8", "module", "QD016"),
        ("quantized::conv2d (ONEDNN): data type of input should be QUint8.", "module", "QD016"),
        ("Weight observer must have a dtype of qint8, got torch.quint8", None, "QD016"),
        ("shape '[1, 8192]' is invalid for input of size 2048", "function", None),
    ],
)
def test_crash_classification(message, level_event, rule):
    events = []
    if level_event == "function":
        events = [fev("Tensor.add", "", [q(), q()], [], line=20)]
    elif level_event == "module":
        events = [mev("conv", "Conv2d", [q()], [])]
    raised = crash(message, module="conv" if level_event == "module" else "", phase="run" if events else "load")
    facts = make_facts(
        [mod("conv", "Conv2d", F.QUANTIZED)],
        events,
        crash=raised if events else None,
        load_crash=None if events else raised,
    )
    assert [r.code for r in owners(raised, facts)] == ([rule] if rule else [])


# A traceback as Python prints it: the script called the model, torchvision's BasicBlock raised.
_LIBRARY_TB = """Traceback (most recent call last):
  File "{user}", line 14, in <module>
    out = model(*example_inputs)
  File "/venv/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1775, in _call_impl
    return forward_call(*args, **kwargs)
  File "/venv/lib/python3.11/site-packages/torchvision/models/resnet.py", line 102, in forward
    out += identity
NotImplementedError: Could not run 'aten::add.out' with arguments from the 'QuantizedCPU' backend.
"""
_MODULE_TB = """Traceback (most recent call last):
  File "{user}", line 30, in <module>
    out = model(x)
  File "{user}", line 12, in forward
    return self.bn(self.conv(x))
  File "/venv/lib/python3.11/site-packages/torch/nn/modules/batchnorm.py", line 193, in forward
    return F.batch_norm(
  File "/venv/lib/python3.11/site-packages/torch/nn/functional.py", line 2813, in batch_norm
    return torch.batch_norm(
NotImplementedError: Could not run 'aten::native_batch_norm' with arguments from the 'QuantizedCPU' backend.
"""


def _script_crash(message: str, tb: str, line: int, code: str):
    from factsbuild import USER_FILE

    return crash(message, module=None, line=line, phase="load", code=code, traceback=tb.format(user=USER_FILE))


def test_a_crash_raised_in_library_code_is_classified_from_its_traceback_and_names_both_lines():
    from qdoctor.diagnose import crash_causes

    raised = _script_crash(ADD_CRASH, _LIBRARY_TB, 14, "out = model(*example_inputs)")
    facts = make_facts([mod("conv", "Conv2d", F.QUANTIZED)], [], load_crash=raised)
    assert [r.code for r in owners(raised, facts)] == ["QD011"]
    library = crash_causes.library_frame(raised, facts)
    assert library is not None and library.line == 102 and library.code == "out += identity"
    text = crash_causes.sites_text(raised, facts)
    assert "torchvision/models/resnet.py:102 `out += identity`" in text and "your line 14" in text


def test_a_crash_inside_a_torch_module_is_module_level_and_has_no_library_line():
    from qdoctor.diagnose import crash_causes

    message = "Could not run 'aten::native_batch_norm' with arguments from the 'QuantizedCPU' backend."
    raised = _script_crash(message, _MODULE_TB, 12, "return self.bn(self.conv(x))")
    facts = make_facts([mod("conv", "Conv2d", F.QUANTIZED)], [], load_crash=raised)
    assert [r.code for r in owners(raised, facts)] == ["QD002"]
    assert crash_causes.library_frame(raised, facts) is None  # the user's own forward made the call


@pytest.mark.parametrize(
    "message, rule",
    [
        ("Fusion only for eval!", "QD009"),
        ("Conv and BN both must be in the same mode (train or eval).", "QD009"),
        ("prepare_qat only works on models in training mode", "QD009"),
        ("Embedding quantization is only supported with float_qparams_weight_only_qconfig.", "QD016"),
        ("Per channel weight observer is not supported yet for ConvTranspose{n}d.", "QD016"),
    ],
)
def test_a_step_that_refuses_a_mode_or_qconfig_is_its_rules_not_an_unknown_flow_failure(message, rule):
    from qdoctor.facts import FlowInfo

    tb = 'Traceback (most recent call last):\n  File "/venv/torch/ao/quantization/quantize_fx.py", line 9, in prepare_fx\n'
    raised = crash(message, module=None, phase="load", type_="AssertionError", traceback=tb)
    facts = make_facts([mod("conv", "Conv2d", F.FLOAT)], [], load_crash=raised, flow=FlowInfo(flow_kind("fx")))
    assert [r.code for r in owners(raised, facts)] == [rule]  # not QD017 "not a known flow failure"


@pytest.mark.parametrize(
    "message, op",
    [
        ("Didn't find engine for operation quantized::conv2d_prepack NoQEngine", "quantized::conv2d_prepack"),
        ("quantized engine NoQEngine is not supported", None),
    ],
)
def test_the_missing_engine_names_its_op(message, op):
    """QD003 reads the op that found no engine from the classification, not from a regex of its own."""
    from qdoctor.diagnose import crash_causes as crashes

    raised = crash(message, module=None, phase="load")
    facts = make_facts([mod("conv", "Conv2d", F.QUANTIZED)], [], load_crash=raised)
    known = crashes.classify(raised, facts)
    assert known is not None and known.cause == crashes.NO_QUANTIZED_ENGINE and known.op == op


def test_backend_error_says_which_side_of_the_int8_boundary():
    from qdoctor.diagnose.crash_causes import backend_error

    into_int8 = backend_error("Could not run 'quantized::linear' with arguments from the 'CPU' backend. This could")
    assert into_int8 is not None and into_int8.op == "quantized::linear" and into_int8.float_into_int8
    assert not into_int8.int8_into_float
    into_float = backend_error("Could not run 'aten::native_batch_norm' with arguments from the 'QuantizedCPU' backend")
    assert into_float is not None and into_float.int8_into_float and not into_float.float_into_int8
    assert backend_error("Could not run 'aten::add.out' with arguments from the 'CUDA' backend").backend == "CUDA"
    assert backend_error("shape '[1, 8192]' is invalid for input of size 2048") is None
