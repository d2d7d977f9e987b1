"""The crash doctor: which rule explains a crash, from its message and where it was raised (module or function).

Each rule's own findings for its crashes are tested in tests/rules/ (QD002, QD003, QD011, QD014, QD015, QD016).
"""

from __future__ import annotations

import pytest
from factsbuild import ADD_CRASH, CUDA_CRASH, crash, fev, make_facts, mev, mod, q

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
