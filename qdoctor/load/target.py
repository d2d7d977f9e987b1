"""Load a target the way a user pastes it into a bug report.

A target is a script (``model.py``), a bug report (``issue.md``, ``post.txt``: its Python runs) or
``package.module:attribute``. The script runs as a module that is not
``__main__``, with its folder on ``sys.path``, its stdout/stderr captured and an empty stdin. If it raises part-way,
the globals defined up to the crash are kept and the crash becomes a fact. Then the subject (the model to check),
its float baseline and the example inputs are picked: by the contract names first, else by what the globals hold.
"""

from __future__ import annotations

import sys
import weakref
from pathlib import Path

import torch
from torch import nn

from qdoctor.errors import TargetError
from qdoctor.facts import INPUTS_CONTRACT, INPUTS_INFERRED, INPUTS_SAVED, Target, TensorInfo
from qdoctor.load.arguments import tensor_leaves
from qdoctor.load.calls import CallLog
from qdoctor.load.flow_steps import FlowLog
from qdoctor.load.inputs import first_layer_input, input_size_that_runs, pick_inputs
from qdoctor.load.language_model import adopt_prompt, language_model_call
from qdoctor.load.loaded import LoadedTarget
from qdoctor.load.options import LoadOptions
from qdoctor.load.script import import_attribute, run_script
from qdoctor.load.select import call_contract, contract_callable, copy_origins, pick_float, pick_subject
from qdoctor.load.standins import StandIns


def _load_saved_target(path: Path, target: Target, trust: bool) -> LoadedTarget:
    """A saved model file as TARGET (see qdoctor.load.saved): no script, no float baseline."""
    from qdoctor.load.saved import load_saved

    saved = load_saved(path, trust=trust)
    target.file = None
    target.subject_name = saved.subject_name
    inputs = saved.inputs
    if inputs is None:
        inferred = first_layer_input(saved.subject)
        if inferred is None:
            raise TargetError(
                f"{path}: cannot tell what input the model takes (the file records no input shape); pass a .py "
                "script that loads it and defines `example_inputs`"
            )
        tensor, how = input_size_that_runs(saved.subject, *inferred)
        inputs = (tensor,)
        target.inputs_inferred = f"the saved model records no inputs; made a random one from the first layer {how}"
        target.inputs_origin = INPUTS_INFERRED
    elif saved.inputs_how:
        # random values, but of the shapes the file records (the user's traced or exported inputs)
        target.inputs_inferred, target.inputs_origin = saved.inputs_how, INPUTS_SAVED
    else:
        target.inputs_name, target.inputs_origin = "the example inputs saved with the program", INPUTS_SAVED
    target.inputs = [
        TensorInfo(str(t.dtype), list(t.shape), bool(t.is_quantized)) for t in inputs if isinstance(t, torch.Tensor)
    ]
    return LoadedTarget(
        target=target,
        subject=saved.subject,
        float_baseline=None,
        inputs=inputs,
        namespace={},
        user_engine=torch.backends.quantized.engine,
        user_num_threads=torch.get_num_threads(),
        saved_format=saved.saved_format,
    )


def load_target(spec: str, *, trust: bool = False, options: LoadOptions | None = None) -> LoadedTarget:
    """Run the target and pick subject, float baseline and inputs. Raises TargetError when nothing can be checked.

    A saved model file (.pt/.pth/.pt2) is loaded instead of run; a pickled full model only with ``trust=True``.
    """
    origins: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    calls: CallLog | None = None
    flows: FlowLog | None = None
    stand_ins: StandIns | None = None
    path = Path(spec)
    looks_like_file = spec.endswith(".py") or path.exists() or "/" in spec or ":" not in spec
    target = Target(spec=spec, file=None, subject_name="", float_name=None, inputs_name=None, inputs=[])
    if looks_like_file:
        if path.is_dir():
            raise TargetError(f"{spec} is a directory; pass a model .py file")
        if not path.exists():
            raise TargetError(f"no such file: {spec}")
        from qdoctor.load.saved import SAVED_SUFFIXES

        if path.suffix in SAVED_SUFFIXES:
            return _load_saved_target(path, target, trust)
        target.file = str(path.resolve())
        calls, flows = CallLog(), FlowLog()
        stand_ins = StandIns(target.file, enabled=(options or LoadOptions()).stand_ins)
        namespace = run_script(path, origins, target, options, stand_ins, calls, flows)
        user_engine = torch.backends.quantized.engine
        user_threads = torch.get_num_threads()
        try:
            subject_name, subject = pick_subject(namespace, target, calls, flows)
        except TargetError as error:  # a report still has its tracebacks and its statically read steps
            error.partial = target if target.report_text is not None else None
            raise
    else:
        namespace, value = import_attribute(spec)
        user_engine = torch.backends.quantized.engine
        user_threads = torch.get_num_threads()
        attr = spec.partition(":")[2]
        if isinstance(value, nn.Module):
            subject_name, subject = attr, value
        elif callable(value):
            subject = call_contract(attr, value, target)
            subject_name = f"{attr}()"
            if not isinstance(subject, nn.Module):
                raise TargetError(f"{spec}() returned {type(subject).__name__}, not a torch.nn.Module")
        else:
            raise TargetError(f"{spec} is a {type(value).__name__}, not an nn.Module or a function returning one")
        target.file = getattr(sys.modules.get(spec.partition(":")[0]), "__file__", None)
    target.subject_name = subject_name
    float_name, float_baseline = pick_float(namespace, subject_name, subject, target, calls, flows)
    target.float_name = float_name
    prepared_in_place = namespace.get(float_name) if float_name else None
    if target.float_derived and float_baseline is not None and isinstance(prepared_in_place, nn.Module):
        copy_origins(prepared_in_place, float_baseline, origins)
    try:
        inputs = pick_inputs(namespace, subject, float_baseline, target, calls)
    except TargetError as error:
        error.partial = target if target.report_text is not None else None
        raise
    language_model = language_model_call(subject, float_baseline, inputs, calls)
    if language_model is not None and target.inputs_origin != INPUTS_CONTRACT:
        inputs = adopt_prompt(language_model, target)
    target.inputs = [TensorInfo(str(t.dtype), list(t.shape), bool(t.is_quantized)) for t in tensor_leaves(inputs)]
    calibration = contract_callable(namespace, "calibration_data", target)
    evaluate = contract_callable(namespace, "evaluate", target)
    if stand_ins is not None and stand_ins.used:  # the script's own functions meet the same missing data and GPU
        calibration = stand_ins.wrap(calibration) if calibration is not None else None
        evaluate = stand_ins.wrap(evaluate) if evaluate is not None else None
    target.has_calibration_data = calibration is not None
    target.has_evaluate = evaluate is not None
    return LoadedTarget(
        target=target,
        subject=subject,
        float_baseline=float_baseline,
        inputs=inputs,
        namespace=namespace,
        calibration_data=calibration,
        evaluate=evaluate,
        origins=origins,
        user_engine=user_engine,
        user_num_threads=user_threads,
        flow_steps=flows,
        language_model=language_model,
    )
