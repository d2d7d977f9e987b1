"""What a check cost the machine: its peak resident memory, by phase, against the float model's size.

A check of a big model must not need many times the model's memory: the ratio of the memory the check added to the
float model's own size is the number to watch (``added_per_model``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Resources:
    peak_rss_bytes: int  # the largest resident set the checking process reached, its script included
    start_rss_bytes: int  # resident set when the check began (the interpreter, torch and qdoctor imported)
    float_model_bytes: int | None  # parameters and buffers of the float baseline (None: no baseline)
    subject_model_bytes: int | None  # parameters and buffers of the subject (quantized weights at their own size)
    sampled_every_s: float  # the sampler's period: a peak shorter than this can be missed
    phase_peak_rss_bytes: dict[str, int] = field(default_factory=dict)  # the peak while each phase ran

    @property
    def added_bytes(self) -> int:
        return max(0, self.peak_rss_bytes - self.start_rss_bytes)

    @property
    def added_per_model(self) -> float | None:
        """Memory the check (script included) added at its peak, in float models: 1.0 is one float model's size."""
        if not self.float_model_bytes:
            return None
        return self.added_bytes / self.float_model_bytes
