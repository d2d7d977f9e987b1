"""The ExecuTorch + XNNPACK flow: a deployment target (`--deploy executorch-xnnpack`), never detected on a torch
model; its lowering of a small CNN run once (skipped without executorch)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from deployed import need_executorch
from flowtools import EXAMPLE, float_net
from test_flows_registry import FLOAT_LOOK

from qdoctor import flows
from qdoctor.flows import DeployInputs
from qdoctor.flows.executorch import _made_for, op_type

EXECUTORCH = flows.deploy_flow("executorch-xnnpack")


def test_it_is_the_deploy_target_and_no_model_is_detected_as_it():
    assert EXECUTORCH.deploy_target == "executorch-xnnpack" and "executorch-xnnpack" in flows.deploy_targets()
    assert not EXECUTORCH.matches(FLOAT_LOOK)
    assert not EXECUTORCH.matches(dataclasses.replace(FLOAT_LOOK, node_kinds=frozenset({"quantize"})))
    assert EXECUTORCH.recipes(("x86",)) == [] and not EXECUTORCH.plan_fields


def test_an_unknown_target_names_the_known_ones():
    with pytest.raises(KeyError, match="executorch-xnnpack"):
        flows.deploy_flow("tflite")


def test_op_names_and_the_backend_a_quantizer_is_made_for():
    assert op_type("aten_grid_sampler_2d_default_3") == "aten_grid_sampler_2d_default"
    assert op_type("getitem") == "getitem"
    assert _made_for(("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer.X86InductorQuantizer",))
    assert _made_for(("executorch.backends.xnnpack.quantizer.xnnpack_quantizer.XNNPACKQuantizer",)) is None
    assert _made_for(()) is None


def test_a_float_cnn_is_quantized_lowered_to_one_partition_and_runs():
    need_executorch()
    model = float_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deployed = EXECUTORCH.deploy(DeployInputs(model, None, (), EXAMPLE, [EXAMPLE]))
    int8, float_ = deployed.programs
    assert (int8.role, float_.role) == ("int8", "float")
    assert deployed.quantizer is not None and "XNNPACKQuantizer" in deployed.quantizer
    assert int8.partitions == 1 and not [n for n in int8.not_delegated if n.computes]
    assert int8.delegated.get("aten_convolution_default") and int8.quantized_ops > 0
    assert len(int8.program) > 0 and not int8.edges
    (out,) = int8.run()
    assert out.shape == model(*EXAMPLE).shape
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the user's model is untouched
