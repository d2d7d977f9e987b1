"""The code a fix prints: names taken from the user's script (its model, inputs and calibration variables, never
clobbering one it already uses), the header that says where the code goes, and stand-in calibration code."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from qdoctor.flows import CodeNames
from qdoctor.load.target import LoadedTarget
from qdoctor.prescribe.calibration import CALIBRATION_BATCHES, CalibrationCode
from qdoctor.prescribe.recipe import quantization_lines


class FixCode:
    """Writes the fix snippets for one loaded target."""

    def __init__(self, loaded: LoadedTarget) -> None:
        self.loaded = loaded
        self.target = loaded.target
        self.inputs = loaded.inputs

    def _free_name(self, *candidates: str) -> str:
        return next(n for n in candidates if n not in self.loaded.namespace)

    def inputs_expr(self) -> str | None:
        """The script's name for the example inputs, if the fix-all snippet can use it where it goes."""
        name = self.target.inputs_name
        if not name or not self.target.script_text:
            return name
        blocks = quantization_lines(self.target.script_text)
        if name.endswith("()") or not blocks:
            return name
        assigned = re.compile(rf"^\s*{re.escape(name)}\s*(:[^=]*)?=[^=]")
        lines = self.target.script_text.splitlines()
        first = next((i for i, line in enumerate(lines, 1) if assigned.match(line)), None)
        return name if first is not None and first < blocks[0][0] else None  # defined after the quantization steps

    def stand_in_calibration(self, work: str) -> str:
        """The calibration loop qdoctor's stand-in batches correspond to, feeding the prepared model ``work``."""
        example = self._free_name("example", "qdoctor_example")
        extra = CALIBRATION_BATCHES - 1
        tensors = [t for t in self.inputs if isinstance(t, torch.Tensor)]
        single = len(self.inputs) == 1 and len(tensors) == 1
        name = self.inputs_expr()
        lines = [
            "# calibrate: qdoctor used the example inputs plus random tensors like them; real data calibrates better"
        ]
        x: str | None
        held = self.loaded.namespace.get(name) if name and name.isidentifier() else None
        if name and single and isinstance(held, (tuple, list)):
            x = f"{name}[0]"  # the script's name holds the tuple of arguments: its one tensor
        elif name and single and not name.endswith("()"):
            x = name
        elif single:
            x = example
            lines.append(f"{example} = torch.randn{tuple(tensors[0].shape)}  # your real input here")
        else:
            x = None
            if name:
                lines.append(f"{example} = {name}")
                lines.append(f"{example} = tuple({example}) if isinstance({example}, (tuple, list)) else ({example},)")
            else:
                shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
                lines.append(f"{example} = tuple(torch.randn(s) for s in [{shapes}])  # your real inputs here")
        floating = bool(tensors) and all(t.is_floating_point() for t in tensors)
        batches = self._free_name("calibration_batches", "qdoctor_calibration_batches")
        if x is not None:
            like = f"torch.randn_like({x}) * {x}.std() + {x}.mean()" if floating else x
            first, call = x, "(batch)"
        else:
            like = f"tuple(torch.randn_like(t) * t.std() + t.mean() for t in {example})" if floating else example
            first, call = example, "(*batch)"
        lines += [
            f"{batches} = [{first}] + [{like} for _ in range({extra})]",
            "with torch.no_grad():",
            f"    for batch in {batches}:",
            f"        {work}{call}",
        ]
        return "\n".join(lines)

    def names(self, calibration: CalibrationCode) -> CodeNames:
        """The variable names the builders' code uses, chosen not to clobber the script's own."""
        work = self._free_name("qmodel", "qdoctor_model", "qdoctor_qmodel")
        subject = self.target.subject_name
        quantized = "quantized_model" if subject.endswith("()") else subject
        inputs = self.inputs_expr()
        single = len(self.inputs) == 1 and isinstance(self.inputs[0], torch.Tensor)
        # a name of the script that already holds the tuple of arguments is used as it is; one tensor is wrapped
        held = self.loaded.namespace.get(inputs) if inputs and inputs.isidentifier() else None
        if inputs and isinstance(held, tuple):
            example_inputs = inputs
        elif inputs and single and not inputs.endswith("()"):
            example_inputs = f"({inputs},)"
        elif inputs:
            example_inputs = f"tuple({inputs})"
        else:
            shapes = ", ".join(f"torch.randn{tuple(t.shape)}" for t in self.inputs if isinstance(t, torch.Tensor))
            example_inputs = f"({shapes},)"
        return CodeNames(
            float_model=self.target.float_name or "float_model",
            quantized_model=quantized,
            model=work,
            prepared=work,
            example_inputs=example_inputs,
            calibration=calibration(work),
        )

    def header(self, direct: bool) -> str:
        """Where the snippet goes: after the subject is built (a fix on the subject itself), or in place of the
        script's quantization lines (a rebuild)."""
        target = self.target
        script = Path(target.file).name if target.file else target.spec
        lines = []
        if direct:
            lines.append(f"# qdoctor fix: in {script}, after `{target.subject_name}` is built, add:")
        else:
            blocks = quantization_lines(target.script_text)
            where = f" (lines {', '.join(f'{a}-{b}' if b > a else str(a) for a, b in blocks)})" if blocks else ""
            lines.append(f"# qdoctor fix: in {script}, replace the quantization steps{where} with:")
            if target.float_derived:
                lines.append(f"# `{target.float_name}` must be the float model: do not prepare it in place before this")
        if target.subject_name.endswith("()"):
            lines.append(f"# ({target.subject_name} should return quantized_model)")
        return "\n".join(lines)
