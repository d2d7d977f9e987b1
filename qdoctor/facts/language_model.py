"""A causal language model checked as one: its prompt (prefill) and its per-token decode step timed apart.

int8 can pay on one and not the other: a prefill multiplies the whole prompt's rows at once, a decode step one row
per sequence, where the per-call cost of quantizing activations (or dequantizing weights) is no longer amortized.
"""

from __future__ import annotations

from dataclasses import dataclass

from qdoctor.facts.measurement import Ratio, Timing


@dataclass
class PhaseTiming:
    """One phase (prefill or decode), the subject and the float baseline timed together in interleaved rounds."""

    subject: Timing | None
    float_baseline: Timing | None
    speedup: Ratio | None  # float time / subject time, paired by round (None: not both timed)
    error: str | None = None  # why it could not be timed


@dataclass
class LanguageModel:
    architecture: str  # the model's class, "LlamaForCausalLM"
    batch: int
    prompt_tokens: int  # rows of the prefill call per sequence
    new_tokens: int | None  # tokens the script asked generate() for (decode steps), when it called generate()
    source: str  # where the prompt came from ("the script's generate() call at line 12")
    cache_argument: str  # the forward() keyword that takes the key/value cache ("cache", "past_key_values")
    hidden_size: int | None = None
    layers: int | None = None
    prefill: PhaseTiming | None = None
    decode: PhaseTiming | None = None  # one token per sequence on top of the prompt's cache
    decode_error: str | None = None  # why the decode step could not be built (no croppable cache, ...)
