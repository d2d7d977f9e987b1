"""Scripts of unusual structure run the way their author meant (round-3 batch of public scripts): a debugger
breakpoint left in the script, a model whose ``forward`` the script calls directly, calls from worker threads."""

from __future__ import annotations

import sys
import textwrap

import pytest

from qdoctor.load.options import LoadOptions
from qdoctor.load.target import load_target


def _script(tmp_path, body: str):
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


@pytest.mark.parametrize("stop_on_error", [False, True])
@pytest.mark.parametrize("call", ["import pdb; pdb.set_trace()", "breakpoint()"])
def test_a_breakpoint_is_skipped_and_noted_not_a_crash(tmp_path, call, stop_on_error):
    """pdb with qdoctor's empty stdin would quit with BdbQuit, which is no failure of the script."""
    import pdb

    hook_before, set_trace_before = sys.breakpointhook, pdb.set_trace
    loaded = load_target(
        _script(
            tmp_path,
            f"""
            import torch
            float_model = torch.nn.Sequential(torch.nn.Linear(4, 4)).eval()
            model = torch.ao.quantization.quantize_dynamic(float_model, {{torch.nn.Linear}})
            {call}
            after_breakpoint = model(torch.randn(2, 4))
            """,
        ),
        options=LoadOptions(keep_going=not stop_on_error),
    )
    target = loaded.target
    assert target.load_crash is None and not target.script_errors
    assert target.breakpoints_skipped == [5]
    assert "after_breakpoint" in loaded.namespace  # the script went on after the breakpoint
    assert sys.breakpointhook is hook_before and pdb.set_trace is set_trace_before  # restored


def test_the_breakpoint_note_names_its_line(tmp_path):
    from conftest import run_check

    report = run_check(
        _script(
            tmp_path,
            """
            import torch
            float_model = torch.nn.Sequential(torch.nn.Linear(4, 4)).eval()
            model = torch.ao.quantization.quantize_dynamic(float_model, {torch.nn.Linear})
            x = torch.randn(2, 4)
            import pdb; pdb.set_trace()
            """,
        ),
        profile=False,
    )
    assert "QD014" not in {f.rule for f in report.findings}
    assert any("skipped the debugger breakpoint at line 6" in note for note in report.notes), report.notes


def test_a_model_whose_forward_the_script_calls_directly_from_threads_is_the_subject(tmp_path):
    """pytorch/pytorch#41865: `quantized_linear.forward(inputs)` run from a thread pool bypasses `__call__`; the call
    seen is the inner nn.Linear's. The subject is the wrapper the script quantized, the float baseline the one it
    quantized from, and the inputs the forward's arguments."""
    loaded = load_target(
        _script(
            tmp_path,
            """
            import torch
            from concurrent.futures import ThreadPoolExecutor

            class Wrapper(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.linear = torch.nn.Linear(32, 16)

                def forward(self, inputs, scale=1.0):
                    return self.linear(inputs) * scale

            inputs = torch.randn(5, 32)
            float_linear = Wrapper()
            quantized_linear = torch.ao.quantization.quantize_dynamic(float_linear, {torch.nn.Linear})

            def run_float_model():
                float_linear.forward(inputs, scale=2.0)

            def run_quant_model():
                quantized_linear.forward(inputs)

            executor = ThreadPoolExecutor(max_workers=2)
            for future in [executor.submit(run_float_model) for _ in range(20)]:
                future.result()
            for future in [executor.submit(run_quant_model) for _ in range(20)]:
                future.result()
            """,
        )
    )
    target = loaded.target
    assert (target.subject_name, target.float_name) == ("quantized_linear", "float_linear")
    assert tuple(loaded.inputs[0].shape) == (5, 32)
    assert target.inputs_origin == "script"


def test_a_model_that_cannot_be_copied_to_run_is_reported_not_a_failure_of_qdoctor(tmp_path):
    """A model in train mode with BatchNorm is copied before it runs; a copy that raises (a weight that is a tensor
    subclass without clone, ...) leaves the timing unavailable, with the reason, and the check finishes."""
    from conftest import run_check

    report = run_check(
        _script(
            tmp_path,
            """
            import torch

            class Uncopyable(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.linear = torch.nn.Linear(8, 8)
                    self.bn = torch.nn.BatchNorm1d(8)

                def forward(self, x):
                    return self.bn(self.linear(x))

                def __deepcopy__(self, memo):
                    raise RuntimeError("this model cannot be copied")

            model = Uncopyable()
            x = torch.randn(4, 8)
            model(x)
            """,
        ),
        bench=True,
        profile=False,
    )
    assert report.facts.benchmark is not None
    assert "cannot be copied" in (report.facts.benchmark.subject_error or ""), report.facts.benchmark


def _traceback(*frames: tuple[str, str]) -> str:
    lines = ['Traceback (most recent call last):\n  File "/home/u/script.py", line 23, in <module>\n']
    lines += [f'  File "{file}", line 1, in {function}\n' for file, function in frames]
    return "".join(lines)


def test_the_failed_step_is_the_one_the_script_called_not_the_one_it_runs_inside():
    """pytorch/pytorch#118165: prepare_qat runs convert to swap in the QAT modules; the step that failed is
    prepare_qat (line 23 of the script), not convert."""
    from qdoctor.diagnose.flow_causes import _step_from_traceback

    quantize = "/site-packages/torch/ao/quantization/quantize.py"
    assert _step_from_traceback(_traceback((quantize, "prepare_qat"), (quantize, "convert"))) == "prepare_qat"
    assert _step_from_traceback(_traceback((quantize, "quantize_dynamic"), (quantize, "convert"))) == "quantize_dynamic"
    # the user's own wrapper of that name is not the step: torch's convert is
    assert _step_from_traceback(_traceback(("/home/u/script.py", "prepare"), (quantize, "convert"))) == "convert"


def test_a_model_that_a_torchao_helper_ran_raised_not_a_torchao_step():
    """torchao's quantize_vit tutorial: torchao.utils.benchmark_model(model, 20, input_tensor) runs the model (with the
    tensor unpacked); the ViT's forward raised, which is no failure of a torchao quantization step."""
    from qdoctor.diagnose.flow_causes import _step_from_traceback

    helper = _traceback(
        ("/site-packages/torchao/utils.py", "benchmark_model"),
        ("/site-packages/torch/nn/modules/module.py", "_call_impl"),
        ("/site-packages/torchvision/models/vision_transformer.py", "forward"),
    )
    assert _step_from_traceback(helper) is None
    inside = _traceback(("/site-packages/torchao/quantization/quant_api.py", "_int8_dynamic_activation_int8_weight"))
    assert _step_from_traceback(inside) == "torchao"


def test_a_script_whose_main_raises_before_any_model_is_one_line_exit_2():
    """ExecuTorch's XNNPACK quantization example (argparse main() under `if __name__ == "__main__":`) raises in main()
    before it builds a model when the quantized out-variant ops are not registered (`-s <lib>` or importing
    executorch.kernels.quantized registers them): nothing to check, said in one line naming the script's error."""
    pytest.importorskip("executorch")
    from conftest import FIXTURES

    from qdoctor.errors import TargetError

    script = FIXTURES / "reports" / "executorch_xnnpack_quantization_example" / "script.py"
    with pytest.raises(TargetError) as raised:
        load_target(str(script))
    message = str(raised.value)
    # RuntimeError: the ops are not registered. Once an earlier test in the same process has imported
    # executorch.kernels.quantized, they are, and main() goes on to download its model (URLError, offline): still
    # before any nn.Module, still one line.
    assert ("RuntimeError" in message or "URLError" in message) and "before defining any nn.Module" in message
    assert "\n" not in message.strip()
