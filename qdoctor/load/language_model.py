"""Causal language models (Hugging Face ``...ForCausalLM``) as subjects: their prompt from the script's own calls.

A script runs a language model through ``model.generate(input_ids, ...)`` or ``model(input_ids, ...)``. generate()
calls the model's forward once for the prompt (prefill, with a key/value cache it creates) and once per new token
(decode, one token on top of that cache). qdoctor.load.calls records those forward calls like any other: the first
one holds the prompt's ``input_ids`` and ``attention_mask`` as the script passed them, and the number of calls is the
number of tokens generated. The cache in those calls is the live one generate() kept growing, so it is never reused:
the prompt is replayed (``model(input_ids, attention_mask)``, a prefill that builds its own cache), and the decode
step is built on a fresh prefill (qdoctor.gather.language_model).

Nothing here is imported from transformers: a causal LM is recognized by what it has (a ``generate`` method, a
``config`` that is not encoder-decoder, a forward taking ``input_ids``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from qdoctor.facts import INPUTS_SCRIPT, Target
from qdoctor.load.calls import Call, CallLog

CACHE_ARGUMENTS = ("cache", "past_key_values")  # transformers 5 names it ``cache``; 4.x ``past_key_values``


@dataclass
class LanguageModelCall:
    """The prompt a causal LM is checked on, and how to pass a cache to its forward."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    new_tokens: int | None  # tokens the script generated (its forward calls after the prompt), when it generated
    source: str
    cache_argument: str

    def prefill_arguments(self) -> tuple[Any, ...]:
        """Positional arguments of forward(input_ids, attention_mask) for the prompt."""
        return (self.input_ids,) if self.attention_mask is None else (self.input_ids, self.attention_mask)


def _forward_parameters(model: nn.Module) -> list[str]:
    try:
        return list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return []


def is_causal_lm(model: Any) -> bool:
    """A decoder-only language model that generates: ``generate()``, a config that is not encoder-decoder, and a
    forward taking ``input_ids`` first and a key/value cache."""
    if not isinstance(model, nn.Module) or not callable(getattr(model, "generate", None)):
        return False
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    parameters = _forward_parameters(model)
    return bool(parameters) and parameters[0] == "input_ids" and any(name in parameters for name in CACHE_ARGUMENTS)


def cache_argument(model: nn.Module) -> str:
    parameters = _forward_parameters(model)
    return next((name for name in CACHE_ARGUMENTS if name in parameters), CACHE_ARGUMENTS[-1])


def _prompt_of(call: Call) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The token ids and attention mask of a forward call (positional or keyword, as forward(input_ids,
    attention_mask, ...) takes them)."""
    ids = call.kwargs.get("input_ids", call.args[0] if call.args else None)
    mask = call.kwargs.get("attention_mask", call.args[1] if len(call.args) > 1 else None)
    if not isinstance(ids, torch.Tensor) or ids.dtype not in (torch.int64, torch.int32) or ids.dim() != 2:
        return None
    if not isinstance(mask, torch.Tensor) or mask.shape != ids.shape:
        mask = None
    return ids, mask


def language_model_call(
    subject: nn.Module, float_baseline: nn.Module | None, inputs: tuple[Any, ...], calls: CallLog | None
) -> LanguageModelCall | None:
    """The prompt to check a causal LM on: the first forward call the script made to the subject (or to its float
    baseline), which is generate()'s prefill when the script generated; else the chosen inputs when they are token
    ids. None when the subject is not a causal LM or no prompt is known."""
    if not is_causal_lm(subject):
        return None
    argument = cache_argument(subject)
    for model, whose in ((subject, "the subject"), (float_baseline, "the float baseline")):
        record = calls.of(model) if calls is not None and model is not None else None
        if record is None:
            continue
        prompt = _prompt_of(record.first)
        if prompt is None:
            continue
        ids, mask = prompt
        generated = record.count > 1 and any(name in record.first.kwargs for name in CACHE_ARGUMENTS)
        where = f" at line {record.first.line}" if record.first.line else ""
        how = "generate()" if generated else "forward"
        return LanguageModelCall(
            input_ids=ids,
            attention_mask=mask,
            new_tokens=record.count if generated else None,
            source=f"the prompt of the script's {how} call to {whose}{where}",
            cache_argument=argument,
        )
    prompt = _prompt_of(Call(args=tuple(inputs), kwargs={}, line=None, elements=0))
    if prompt is None:
        return None
    return LanguageModelCall(
        input_ids=prompt[0],
        attention_mask=prompt[1],
        new_tokens=None,
        source="the example inputs",
        cache_argument=argument,
    )


def adopt_prompt(call: LanguageModelCall, target: Target) -> tuple[Any, ...]:
    """Check the causal LM on its prompt, replayed as forward(input_ids, attention_mask): the arguments selection
    took from the script's calls hold generate()'s live cache (or could not be passed by position)."""
    target.selection = [note for note in target.selection if not note.startswith(("inputs:", "inputs tried first:"))]
    target.selection.append(
        f"inputs: {describe(call)}, replayed as forward(input_ids, attention_mask) (a prefill; the decode step is "
        "timed apart)"
    )
    target.inputs_name, target.inputs_origin, target.inputs_inferred = None, INPUTS_SCRIPT, None
    return call.prefill_arguments()


def describe(call: LanguageModelCall) -> str:
    batch, tokens = call.input_ids.shape
    generated = f", then {call.new_tokens} generated token(s)" if call.new_tokens else ""
    return f"{call.source}: {batch}x{tokens} token ids{generated}"
