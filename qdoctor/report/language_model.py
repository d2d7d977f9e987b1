"""The line a report gives a causal language model: its prompt and decode step, int8 against fp32 (pure)."""

from __future__ import annotations

from typing import Any

from qdoctor.facts.language_model import LanguageModel, PhaseTiming


def _phase(name: str, phase: PhaseTiming | None) -> str | None:
    if phase is None:
        return None
    if phase.subject is None or phase.float_baseline is None:
        return f"{name}: not timed ({phase.error or 'a model raised'})"
    ratio = phase.speedup
    compared = f", int8 at {ratio.text()} the speed of fp32" if ratio is not None else ""
    return (
        f"{name} {phase.subject.median_ms:.2f} ms in int8 vs {phase.float_baseline.median_ms:.2f} ms in fp32{compared}"
    )


def language_model_note(facts: Any) -> str | None:
    """None when the subject is not a causal LM."""
    model: LanguageModel | None = getattr(facts, "language_model", None)
    if model is None:
        return None
    shape = f"{model.architecture}, prompt of {model.batch}x{model.prompt_tokens} tokens ({model.source})"
    parts = [p for p in (_phase("prompt (prefill)", model.prefill), _phase("one decode step", model.decode)) if p]
    if model.decode_error:
        parts.append(f"decode step not timed: {model.decode_error}")
    return f"language model: {shape}" + (": " + "; ".join(parts) if parts else "")
