"""Choosing what to check in scripts written by others (issue 15, classes 1, 2, 3 and 9): the model the script ran in
its quantized form, its float baseline found by structure in every flow, and the arguments the script really passed
(nested, keyword, one batch of a dataset), with the choice said in the report.

The fixtures reproduce public tutorials and reports (links at the top of each)."""

import textwrap

import pytest
import torch
from conftest import FIXTURES, codes, run_check
from torch import nn

from qdoctor.errors import TargetError
from qdoctor.facts import Target
from qdoctor.load.calls import CallLog, recording_calls
from qdoctor.load.inputs import pick_inputs
from qdoctor.load.target import load_target


def _script(tmp_path, text: str) -> str:
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(text))
    return str(path)


# ---- class 3: nested inputs, and the TypeError of qdoctor's own guess ----


def test_lstm_hidden_state_tuple_is_passed_as_the_script_passed_it():
    loaded = load_target(str(FIXTURES / "dynamic_lstm_recipe_hidden_state.py"))
    t = loaded.target
    assert (t.subject_name, t.float_name) == ("quantized_lstm", "float_lstm")
    x, hidden = loaded.inputs
    assert tuple(x.shape) == (20, 1, 8)
    assert isinstance(hidden, tuple) and [tuple(h.shape) for h in hidden] == [(1, 1, 8), (1, 1, 8)]
    assert t.inputs_name == "(inputs, hidden)"  # the script's own names, usable in fix code
    assert [i.shape for i in t.inputs] == [[20, 1, 8], [1, 1, 8], [1, 1, 8]]
    assert any("passed to `quantized_lstm` at line 36" in s for s in t.selection)


def test_lstm_recipe_is_diagnosed_not_reported_as_a_crash():
    report = run_check(FIXTURES / "dynamic_lstm_recipe_hidden_state.py")
    assert report.facts.crash is None and "QD014" not in codes(report)
    assert report.facts.numerics is not None  # the float baseline ran on the same nested inputs


def test_nested_and_keyword_example_inputs_are_accepted(tmp_path):
    loaded = load_target(
        _script(
            tmp_path,
            """
            import torch
            from torch import nn

            class Tagger(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.lstm = nn.LSTM(4, 8)

                def forward(self, x, state, scale=1.0):
                    out, _ = self.lstm(x, state)
                    return out * scale

            model = torch.ao.quantization.quantize_dynamic(Tagger(), {nn.LSTM})
            example_inputs = {"x": torch.randn(5, 1, 4), "state": (torch.zeros(1, 1, 8), torch.zeros(1, 1, 8))}
            """,
        )
    )
    # keywords bound to the forward's positions; the default after the last one given is left to the forward (a
    # wrapped forward may pass it itself: transformers' BertModel raised "multiple values for argument 'use_cache'")
    x, state = loaded.inputs
    assert tuple(x.shape) == (5, 1, 4) and len(state) == 2


def test_inferred_input_fills_an_optional_state_with_none(tmp_path):
    loaded = load_target(
        _script(
            tmp_path,
            """
            import torch
            from torch import nn

            class Wrapper(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.lstm = nn.LSTM(6, 6)

                def forward(self, inputs, hidden):
                    return self.lstm(inputs, hidden)

            quantized = torch.ao.quantization.quantize_dynamic(Wrapper(), {nn.LSTM})
            """,
        )
    )
    assert loaded.inputs[1] is None and "None for the 1 other forward argument" in loaded.target.inputs_inferred


def test_inputs_qdoctor_cannot_make_up_are_bad_input_not_a_crash(tmp_path):
    spec = _script(
        tmp_path,
        """
        import torch
        from torch import nn

        class Masked(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8, 8)

            def forward(self, x, mask):
                return self.fc(x) * mask.float()

        quantized = torch.ao.quantization.quantize_dynamic(Masked(), {nn.Linear})
        """,
    )
    with pytest.raises(TargetError, match=r"cannot make up inputs for `quantized`.*define `example_inputs`"):
        load_target(spec)


# ---- class 2: inputs the script really ran; a dataset cut to one batch; never a model's output ----


def test_word_language_model_runs_on_the_window_the_script_ran():
    loaded = load_target(str(FIXTURES / "dynamic_lstm_word_language_model.py"))
    t = loaded.target
    assert (t.subject_name, t.float_name) == ("quantized_model", "model")
    data, (h, c) = loaded.inputs
    assert tuple(data.shape) == (25, 1) and tuple(h.shape) == (2, 1, 64) == tuple(c.shape)  # not the 3000-token corpus
    report = run_check(FIXTURES / "dynamic_lstm_word_language_model.py", profile=False)
    assert report.facts.crash is None and "QD014" not in codes(report)


def test_a_whole_dataset_is_cut_to_one_batch_and_the_report_says_so():
    loaded = load_target(str(FIXTURES / "lstm_forecast_whole_test_set.py"))
    t = loaded.target
    assert (t.subject_name, t.float_name) == ("qmodel", "model")
    assert tuple(loaded.inputs[0].shape) == (1, 24, 8)
    assert t.inputs_name == "X_test[:1]"
    assert any("3000 rows" in s and "one batch" in s for s in t.selection)


def test_a_model_output_is_never_taken_for_an_input():
    float_model = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
    log = CallLog()
    with recording_calls(None, log):
        x = torch.randn(1, 8)
        image = float_model(x)  # named like an input, fits the model too: only the record tells it is an output
    subject = torch.ao.quantization.quantize_dynamic(float_model, {nn.Linear})  # never called
    target = Target(spec="", file=None, subject_name="q", float_name=None, inputs_name=None, inputs=[])
    inputs = pick_inputs({"image": image, "x": x}, subject, None, target, log)
    assert inputs[0] is x and target.inputs_name == "x"
    assert any("`image` (outputs of the script's models)" in s for s in target.selection)


def test_a_tuple_of_tensors_the_script_keeps_as_the_models_arguments_is_its_input():
    """pytorch/executorch#20517: `sample_inputs = (torch.randn(1, 256), )` beside an exported model whose forward
    reshapes its input: no layer tells the shape, the tuple does."""

    class Reshapes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, kernel_size=(32, 1), padding="same")

        def forward(self, input: torch.Tensor) -> torch.Tensor:
            return self.conv(torch.reshape(input, (1, 1, 256, 1)))

    model = torch.export.export(Reshapes().eval(), (torch.ones(1, 256),)).module()
    sample_inputs = (torch.randn(1, 256),)
    target = Target(spec="", file=None, subject_name="model", float_name=None, inputs_name=None, inputs=[])
    inputs = pick_inputs({"model": model, "sample_inputs": sample_inputs, "pair": (1, 2)}, model, None, target)
    assert inputs == sample_inputs and target.inputs_name == "sample_inputs"


def test_a_tensor_that_does_not_fit_gives_way_to_the_first_layer(tmp_path):
    loaded = load_target(
        _script(
            tmp_path,
            """
            import torch
            from torch import nn

            features = torch.randn(4, 10)  # not this model's input
            quantized = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(8, 4)), {nn.Linear})
            """,
        )
    )
    assert tuple(loaded.inputs[0].shape) == (1, 8) and loaded.target.inputs_inferred
    assert any("`features`" in s for s in loaded.target.selection)


# ---- class 1: the model the script ran in its quantized form ----


def test_the_int8_model_the_script_ran_wins_over_a_float_wrapper_named_quantized_model():
    loaded = load_target(str(FIXTURES / "int8_under_another_name.py"))
    t = loaded.target
    assert (t.subject_name, t.float_name, t.inputs_name) == ("model_int8", "net", "image")
    assert any("`quantized_model` holds a float" in s for s in t.selection)
    report = run_check(FIXTURES / "int8_under_another_name.py")
    assert report.facts.crash is None and "QD004" in codes(report)  # its real defect: conv+relu not fused
    assert any(n.startswith("subject: `model_int8`") for n in report.notes)


def test_a_model_run_only_inside_a_function_is_found(tmp_path):
    loaded = load_target(
        _script(
            tmp_path,
            """
            import torch
            from torch import nn

            def main():
                net = nn.Sequential(nn.Linear(8, 8)).eval()
                q = torch.ao.quantization.quantize_dynamic(net, {nn.Linear})
                q(torch.randn(2, 8))
                net(torch.randn(2, 8))

            main()
            """,
        )
    )
    assert loaded.target.subject_name == "q (in main)"
    assert loaded.float_baseline is not None and tuple(loaded.inputs[0].shape) == (2, 8)


# ---- class 9: the float baseline by structure in every flow ----


def test_pt2e_float_model_named_model_is_the_baseline():
    loaded = load_target(str(FIXTURES / "pt2e_float_named_model.py"))
    assert (loaded.target.subject_name, loaded.target.float_name) == ("converted_model", "model")
    report = run_check(FIXTURES / "pt2e_float_named_model.py")
    assert not any("no float baseline" in n for n in report.notes)
    assert "QD012" in codes(report) and report.facts.numerics is not None


def test_compiled_subject_finds_its_float_baseline(tmp_path):
    from qdoctor.load.select import _same_structure

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    wrapped = torch.ao.quantization.QuantWrapper(net)
    compiled = torch.compile(wrapped)  # not run: only its structure is read
    assert _same_structure(compiled, net) and _same_structure(wrapped, net)


# ---- the recorder ----


def test_recorder_keeps_top_level_calls_only_and_skips_tracing():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    other = nn.Linear(4, 2)
    log = CallLog()
    with recording_calls(None, log):
        big = torch.randn(300, 4)
        model(big)
        small = torch.randn(1, 4)
        model(small)
        torch.export.export(other, (torch.randn(1, 4),))  # traced with fake tensors: not the script's call
    assert nn.Module.__call__.__name__ == "_wrapped_call_impl"  # restored
    assert [m for m, _ in log.called()] == [model]  # no submodule, no traced model
    record = log.of(model)
    assert record is not None and record.count == 2
    assert record.first.args[0] is big and record.smallest.args[0] is small


def test_calibration_stand_ins_keep_the_structure_of_nested_inputs():
    from qdoctor.flows import calibration_batches

    x, h, c = torch.randn(5, 1, 4), torch.randn(1, 1, 8), torch.randn(1, 1, 8)
    batches, _ = calibration_batches(None, (x, (h, c)), count=3)
    assert len(batches) == 3 and batches[0] == (x, (h, c))
    x2, (h2, c2) = batches[1]
    assert x2.shape == x.shape and h2.shape == h.shape and c2.shape == c.shape
    assert not torch.equal(h2, h)  # a new random state, not the example's


@pytest.mark.parametrize("flow", ["fx", "torchao"])
def test_float_baseline_by_structure_in_fx_and_torchao(flow):
    import copy

    from qdoctor.load.select import pick_float

    net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    sample = torch.randn(2, 16)
    if flow == "fx":
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        prepared = prepare_fx(copy.deepcopy(net), get_default_qconfig_mapping("x86"), (sample,))
        prepared(sample)
        quantized = convert_fx(prepared)
    else:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        quantized = copy.deepcopy(net)
        quantize_(quantized, Int8WeightOnlyConfig())
    other = nn.Sequential(nn.Conv2d(3, 3, 1))  # a float model of another structure
    target = Target(spec="", file=None, subject_name="int8", float_name=None, inputs_name=None, inputs=[])
    name, baseline = pick_float({"other": other, "base": net, "int8": quantized}, "int8", quantized, target)
    assert name == "base" and baseline is net


def test_keyword_calls_bind_no_default_after_the_last_argument_given():
    """A forward wrapped the way transformers wraps its models passes some arguments itself (use_cache): qdoctor's
    positional version of a keyword call must stop at the last argument the script gave."""
    from torch import nn

    from qdoctor.load.arguments import bind_positional

    class Model(nn.Module):
        def forward(self, input_ids=None, attention_mask=None, use_cache=None):
            return input_ids

    assert bind_positional(Model(), (), {"input_ids": 1, "attention_mask": 2}) == (1, 2)
    assert bind_positional(Model(), (), {"input_ids": 1, "use_cache": 3}) == (1, None, 3)
