"""A causal LM's decode step where int8 does not pay (pure): the verdict QD013 (torchao layers) and QD008
(torch.ao dynamic int8 layers) report, from the prefill and decode timings of ``facts.language_model``.

A decode step multiplies one row per sequence through every Linear: the fixed per-call work around each int8
matmul (quantizing the activation row, or dequantizing the weight) is no longer amortized over a prompt's rows, so
int8 can pay on the prompt and lose on every generated token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qdoctor.facts import Facts
from qdoctor.facts.language_model import LanguageModel, PhaseTiming

SLOWER = 1.05  # the int8 decode step at least 5 % slower than fp32, beyond noise


@dataclass
class DecodeSlowdown:
    model: LanguageModel
    decode: PhaseTiming
    prefill_verdict: str  # "faster", "slower", "within noise", "not timed"

    def evidence(self) -> dict[str, Any]:
        decode, prefill = self.decode, self.model.prefill
        found: dict[str, Any] = {
            "phase": "decode",
            "decode_subject_ms": round(decode.subject.median_ms, 3) if decode.subject else None,
            "decode_float_ms": round(decode.float_baseline.median_ms, 3) if decode.float_baseline else None,
            "decode_speedup_interval": decode.speedup.as_dict() if decode.speedup else None,
            "prompt_tokens": self.model.prompt_tokens,
            "batch": self.model.batch,
            "matmul_rows_per_decode_step": self.model.batch,
            "prefill_verdict": self.prefill_verdict,
        }
        if prefill is not None and prefill.speedup is not None:
            found["prefill_speedup_interval"] = prefill.speedup.as_dict()
        return found

    def text(self) -> str:
        decode = self.decode
        assert decode.subject is not None and decode.float_baseline is not None and decode.speedup is not None
        model = self.model
        prefill = {
            "faster": "while its prompt (prefill) is faster in int8",
            "slower": "and its prompt (prefill) too",
            "within noise": "while on its prompt (prefill) int8 and fp32 are within noise",
        }.get(self.prefill_verdict, "")
        return (
            f"one decode step of this {model.architecture} (one token per sequence: {model.batch}-row matmuls) runs "
            f"in {decode.subject.median_ms:.2f} ms in int8 vs {decode.float_baseline.median_ms:.2f} ms in fp32 "
            f"(int8 at {decode.speedup.low:.2f}-{decode.speedup.high:.2f}x the speed of fp32) {prefill}".rstrip()
        )


def _verdict(phase: PhaseTiming | None) -> str:
    ratio = phase.speedup if phase is not None else None
    if ratio is None:
        return "not timed"
    if ratio.clearly_above(1.0):
        return "faster"
    if ratio.clearly_below(1.0 / SLOWER):
        return "slower"
    return "within noise"


def decode_slowdown(facts: Facts) -> DecodeSlowdown | None:
    """The int8 decode step clearly slower than fp32's (measured together, interval below 1 / SLOWER), else None."""
    model = facts.language_model
    if model is None or model.decode is None or _verdict(model.decode) != "slower":
        return None
    decode = model.decode
    if decode.subject is None or decode.float_baseline is None:
        return None
    return DecodeSlowdown(model=model, decode=decode, prefill_verdict=_verdict(model.prefill))
