"""The TorchScript flow: a scripted or traced model of another flow is TorchScript first; rebuilt the eager way."""

from __future__ import annotations

import warnings

import torch
import torch.ao.quantization as tq
from flowtools import EXAMPLE, detected, float_net

from qdoctor import flows
from qdoctor.introspect.flow import model_flow

TORCHSCRIPT = flows.flow_named("torchscript")


def test_a_traced_int8_model_is_torchscript_and_rebuilt_the_eager_way():
    model = tq.QuantWrapper(float_net())
    model.qconfig = tq.get_default_qconfig("x86")
    prepared = tq.prepare(model)
    prepared(*EXAMPLE)
    converted = tq.convert(prepared)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(converted, EXAMPLE)
    assert detected(traced).flow is TORCHSCRIPT
    assert flows.rebuild_flow(model_flow(traced)) is flows.flow_named("eager")
    assert TORCHSCRIPT.recipes(("x86",)) == [] and not TORCHSCRIPT.plan_fields
