"""The model.py contract: explicit names, triage scripts, crashes part-way, and what cannot be checked."""

import pytest
import torch
from conftest import FIXTURES, SCRIPTS

from qdoctor.errors import TargetError
from qdoctor.load.target import load_target


def test_contract_names():
    loaded = load_target(str(SCRIPTS / "contract_names.py"))
    t = loaded.target
    assert (t.subject_name, t.float_name, t.inputs_name) == ("quantized_model", "float_model", "example_inputs")
    assert t.has_calibration_data and t.has_evaluate
    assert loaded.inputs[0].shape == (2, 8)


def test_build_functions_are_called():
    loaded = load_target(str(FIXTURES / "healthy_static.py"))
    assert loaded.target.subject_name == "build_model()"
    assert loaded.target.float_name == "build_float_model()"
    assert loaded.target.inputs_name == "get_example_inputs()"


def test_crash_partway_keeps_globals_and_records_the_crash():
    loaded = load_target(str(SCRIPTS / "crash_partway.py"))
    crash = loaded.target.load_crash
    assert crash is not None and crash.type == "RuntimeError" and crash.line == 8
    assert loaded.target.subject_name == "q"  # the quantized global, picked without contract names
    assert loaded.target.float_name == "net"
    assert loaded.target.inputs_name == "x"
    assert "about to fail" in loaded.target.user_stdout


def test_seed004_triage_script():
    loaded = load_target(str(FIXTURES / "seed004_as_written.py"))
    t = loaded.target
    assert (t.subject_name, t.float_name, t.inputs_name) == ("quantized_model", "model", "input_tensor")
    assert t.load_crash is not None and t.load_crash.type == "NotImplementedError"


@pytest.mark.parametrize("stop_on_error", [False, True])
def test_main_block_runs_as_from_the_command_line(stop_on_error):
    """The `if __name__ == "__main__":` block runs with argparse's defaults, and its `sys.exit(0)` is a normal end."""
    from qdoctor.load.options import LoadOptions

    loaded = load_target(str(SCRIPTS / "main_guard.py"), options=LoadOptions(keep_going=not stop_on_error))
    t = loaded.target
    assert t.load_crash is None and not t.script_errors
    assert (t.subject_name, t.float_name) == ("quantized (in main)", "net (in main)")
    assert tuple(loaded.inputs[0].shape) == (2, 16)


def test_inputs_inferred_from_first_layer():
    loaded = load_target(str(SCRIPTS / "infer_inputs.py"))
    assert loaded.target.inputs_inferred and "Conv2d" in loaded.target.inputs_inferred
    assert tuple(loaded.inputs[0].shape) == (1, 3, 224, 224)


@pytest.mark.parametrize(
    "target, message",
    [
        (str(SCRIPTS / "missing.py"), "no such file"),
        (str(SCRIPTS / "syntax_error.py"), "syntax error"),
        (str(SCRIPTS / "no_module.py"), "no torch.nn.Module found"),
        (str(SCRIPTS), "is a directory"),
    ],
)
def test_targets_that_cannot_be_checked(target, message):
    with pytest.raises(TargetError, match=message):
        load_target(target)


def test_module_source_lines_point_into_the_user_file():
    from qdoctor.gather.modules import inventory

    loaded = load_target(str(FIXTURES / "seed004_as_written.py"))
    modules = {m.path: m for m in inventory(loaded.subject, loaded.origins, loaded.float_baseline)}
    assert modules["0"].source is not None and modules["0"].source.line == 10
    assert "nn.Conv2d(3, 64" in modules["0"].source.code


def test_loading_restores_global_state():
    from qdoctor.introspect.state import preserved_torch_state

    engine, threads = torch.backends.quantized.engine, torch.get_num_threads()
    with preserved_torch_state():
        load_target(str(FIXTURES / "healthy_static.py"))  # sets the engine to x86 inside build_model()
        torch.backends.quantized.engine = "qnnpack"
        torch.set_num_threads(1)
    assert torch.backends.quantized.engine == engine and torch.get_num_threads() == threads
