"""The script styles of the matrix: the same flow written the ways people write it. A style names the models,
places the flow (top level, a function, ``if __name__ == "__main__":``), calibrates and runs the models its way.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass

from .faults import Fault, Flow, Names
from .models import Model

HEADER = "import torch\nimport torch.nn as nn\nimport torch.ao.quantization as tq\n"
FIRST = "def first(out):\n    return out if torch.is_tensor(out) else out[0]\n"


def loop_calibration(model: Model, prepared: str, batches: str) -> str:
    return f"with torch.no_grad():\n    for batch in {batches}:\n        {model.call(prepared, 'batch')}"


def helper_calibration(model: Model, prepared: str, batches: str) -> str:
    return f"calibrate({prepared}, {batches})"


def indent(lines: list[str], prefix: str = "    ") -> str:
    return "\n".join(textwrap.indent(line, prefix) for line in lines)


def inputs_line(model: Model, name: str, as_tuple: bool = False) -> str:
    if model.dict_inputs and as_tuple:
        return f"{name} = tuple(make_inputs().values())"
    return f"{name} = make_inputs()"


@dataclass(frozen=True)
class Style:
    name: str
    summary: str
    names: Names
    render: Callable[[Model, Flow, Names], str]


def _script(model: Model, flow: Flow, source: str, body: str, imports: tuple[str, ...] = ()) -> str:
    head = HEADER + "".join(f"{line}\n" for line in (*imports, *flow.imports))
    return f"{head}\n{source}\n\n{body.rstrip()}\n"


def _contract(model: Model, flow: Flow, n: Names) -> str:
    lines = [inputs_line(model, n.inputs, as_tuple=True), f"{n.batches} = [make_inputs() for _ in range(3)]"]
    lines += flow.lines
    if flow.subject != "quantized_model":
        lines.append(f"quantized_model = {flow.subject}")
    lines.append(f"with torch.no_grad():\n    output = {model.call('quantized_model', n.inputs, natural=False)}")
    return "\n".join(lines)


def _arbitrary(model: Model, flow: Flow, n: Names) -> str:
    lines = [inputs_line(model, n.inputs), f"{n.batches} = [make_inputs() for _ in range(3)]", *flow.lines]
    lines.append(f"out = {model.call(flow.subject, n.inputs)}")
    return "\n".join(lines)


def _function(model: Model, flow: Flow, n: Names) -> str:
    lines = [inputs_line(model, n.inputs), f"{n.batches} = [make_inputs() for _ in range(3)]", *flow.lines]
    lines.append(
        "with torch.no_grad():\n"
        f"    ref = {model.call(n.float, n.inputs)}\n"
        f"    out = {model.call(flow.subject, n.inputs)}\n"
        'print("int8 output", tuple(first(out).shape), "fp32 output", tuple(first(ref).shape))'
    )
    return f"{FIRST}\n\ndef main():\n{indent(lines)}\n\n\nmain()"


def _dunder_main(model: Model, flow: Flow, n: Names) -> str:
    lines = [inputs_line(model, n.inputs), f"{n.batches} = [make_inputs() for _ in range(args.calibration_batches)]"]
    lines += flow.lines
    lines.append(f"with torch.no_grad():\n    for _ in range(args.runs):\n        {model.call(flow.subject, n.inputs)}")
    return (
        f"def run(args):\n{indent(lines)}\n\n\n"
        'if __name__ == "__main__":\n'
        '    parser = argparse.ArgumentParser(description="quantize the model and run it")\n'
        '    parser.add_argument("--calibration-batches", type=int, default=3)\n'
        '    parser.add_argument("--runs", type=int, default=2)\n'
        "    run(parser.parse_args())"
    )


def _loop(model: Model, flow: Flow, n: Names) -> str:
    lines = [inputs_line(model, n.inputs), f"{n.batches} = [make_inputs() for _ in range(3)]", *flow.lines]
    lines.append(f'models = {{"fp32": {n.float}, "int8": {flow.subject}}}')
    lines.append(
        "timings = []\n"
        "for name, candidate in models.items():\n"
        "    start = time.perf_counter()\n"
        "    with torch.no_grad():\n"
        "        for _ in range(3):\n"
        f"            {model.call('candidate', n.inputs)}\n"
        "    timings.append((name, (time.perf_counter() - start) / 3 * 1000))\n"
        "for name, ms in timings:\n"
        '    print(f"{name}: {ms:.2f} ms")'
    )
    return "\n".join(lines)


def _helpers(model: Model, flow: Flow, n: Names) -> str:
    if model.name == "lstm_lm":  # the word-language-model tutorial: the hidden state carried from batch to batch
        evaluate = (
            "def evaluate(model_, data_source):\n"
            "    hidden = (torch.zeros(2, 1, 64), torch.zeros(2, 1, 64))\n"
            "    seen = 0\n"
            "    with torch.no_grad():\n"
            "        for tokens, _ in data_source:\n"
            "            output, hidden = model_(tokens, hidden)\n"
            "            seen += output.shape[0]\n"
            "    return seen\n"
        )
    else:
        evaluate = (
            "def evaluate(model_, data_source):\n"
            "    seen = 0\n"
            "    with torch.no_grad():\n"
            "        for batch in data_source:\n"
            f"            seen += first({model.call('model_', 'batch')}).shape[0]\n"
            "    return seen\n"
        )
    helpers = (
        f"{FIRST}\n\n"
        "def calibrate(model_, loader):\n"
        "    with torch.no_grad():\n"
        "        for batch in loader:\n"
        f"            {model.call('model_', 'batch')}\n\n\n"
        f"{evaluate}\n\n"
        "def benchmark(model_, data, runs=3):\n"
        "    with torch.no_grad():\n"
        "        start = time.perf_counter()\n"
        "        for _ in range(runs):\n"
        f"            {model.call('model_', 'data')}\n"
        "    return (time.perf_counter() - start) / runs * 1000\n"
    )
    lines = [inputs_line(model, n.inputs), f"{n.batches} = [make_inputs() for _ in range(3)]", *flow.lines]
    lines += [
        "eval_data = [make_inputs() for _ in range(2)]",
        f'print("fp32 evaluated", evaluate({n.float}, eval_data))',
        f'print("int8 evaluated", evaluate({flow.subject}, eval_data))',
        f'print(f"int8 {{benchmark({flow.subject}, {n.inputs}):.2f}} ms")',
    ]
    return helpers + "\n\n" + "\n".join(lines)


def _both_alive(model: Model, flow: Flow, n: Names) -> str:
    lines = [inputs_line(model, n.inputs), f"{n.batches} = [make_inputs() for _ in range(8)]", *flow.lines]
    lines.append(
        "with torch.no_grad():\n"
        f"    reference = {model.call(n.float, n.inputs)}\n"
        f"    result = {model.call(flow.subject, n.inputs)}\n"
        # a dynamic flow has no prepared model: the line names it only when the flow made one
        f'print("outputs", tuple(first(result).shape), "prepared model:", type(globals().get("{n.prepared}")).__name__)'
    )
    return f"{FIRST}\n\n" + "\n".join(lines)


def _notebook(model: Model, flow: Flow, n: Names) -> str:
    lines = [
        "# %% [markdown]\n# ## Quantize\n\n# %%",
        inputs_line(model, n.inputs),
        f"{n.batches} = [make_inputs() for _ in range(3)]",
        *flow.lines,
        f"print({n.float})",
        "\n# %%",
        f"ref = {model.call(n.float, n.inputs)}",
        f"out = {model.call(flow.subject, n.inputs)}",
        'assert tuple(first(out).shape) == tuple(first(ref).shape), "the output shape changed"',
        'print("max difference?", tuple(first(out).shape))',
        flow.subject,
    ]
    return f"{FIRST}\n\n" + "\n".join(lines)


def _names(f: str, p: str, q: str, x: str, b: str, helper: bool = False, as_tuple: bool = False) -> Names:
    return Names(f, p, q, x, b, helper_calibration if helper else loop_calibration, inputs_as_tuple=as_tuple)


STYLES: dict[str, Style] = {
    s.name: s
    for s in (
        Style(
            "contract",
            "contract names at top level",
            _names("float_model", "prepared", "quantized_model", "example_inputs", "calibration", as_tuple=True),
            _contract,
        ),
        Style("arbitrary", "arbitrary names", _names("net", "calibrated", "int8_net", "sample", "batches"), _arbitrary),
        Style(
            "function",
            "the whole flow inside main(), called at the bottom",
            _names("fp32", "observed", "qnet", "batch", "calib"),
            _function,
        ),
        Style(
            "dunder_main",
            'argparse defaults under `if __name__ == "__main__":`',
            _names("model", "prepared", "qmodel", "inputs", "calibration_set"),
            _dunder_main,
        ),
        Style(
            "loop",
            "models in a dict, timed in a loop over (name, model) pairs",
            _names("model_fp32", "model_prepared", "model_int8", "images", "calib_batches"),
            _loop,
        ),
        Style(
            "helpers",
            "calibrate/evaluate/benchmark helpers with their own signatures",
            _names("model", "prepared", "qmodel", "sample", "calib_loader", helper=True),
            _helpers,
        ),
        Style(
            "both_alive",
            "prepared (calibrated 8 times) and converted models both alive",
            _names("model", "prepared_model", "quantized", "inp", "calibration_batches"),
            _both_alive,
        ),
        Style(
            "notebook",
            "notebook cells with prints, asserts and bare expressions",
            _names("m", "pm", "qm", "x", "calib"),
            _notebook,
        ),
    )
}

IMPORTS = {"dunder_main": ("import argparse",), "loop": ("import time",), "helpers": ("import time",)}


def render(model: Model, fault: Fault, style: Style) -> str:
    flow = fault.flow(model, style.names)
    source = model.source(fault.variant)
    return _script(model, flow, source, style.render(model, flow, style.names), IMPORTS.get(style.name, ()))
