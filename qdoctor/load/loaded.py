"""What loading hands the later stages: the live objects behind a target (data only; it imports none of the modules
that pick them, so load/target.py, load/select.py, load/inputs.py and load/input_fit.py can all use it)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from qdoctor.facts import SourceLocation, Target
from qdoctor.load.flow_steps import FlowLog
from qdoctor.load.language_model import LanguageModelCall


@dataclass
class LoadedTarget:
    """The live objects behind a target. Never handed to rules: facts are gathered from it once."""

    target: Target
    subject: nn.Module
    float_baseline: nn.Module | None
    inputs: tuple[Any, ...]
    namespace: dict[str, Any]
    calibration_data: Callable[[], Any] | None = None
    evaluate: Callable[[nn.Module], float] | None = None
    origins: weakref.WeakKeyDictionary[nn.Module, SourceLocation] = field(default_factory=weakref.WeakKeyDictionary)
    user_engine: str = ""  # torch.backends.quantized.engine when the script finished
    user_num_threads: int = 0
    saved_format: str | None = None  # TARGET was a saved model: "torchscript", "exported_program", "pickle"
    language_model: LanguageModelCall | None = None  # a causal LM's prompt (qdoctor.load.language_model)
    flow_steps: FlowLog | None = None  # the quantization flow steps the script ran (load/flow_steps.py)
