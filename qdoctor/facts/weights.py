"""Whether the model's weights are trained: the fact that decides if an accuracy verdict means anything.

Bug-report reproductions very often build the model with random weights (``weights=None``, a freshly constructed
class, a checkpoint the reporter could not share, an offline stand-in). int8 on random weights gives 10-13 dB where
the same model trained gives 30: a verdict on that SQNR is a verdict on the random draw, not on the user's model.
qdoctor.gather.weights fills this once; QD020/QD021 and `qdoctor compare` read it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

TRAINED = "trained"
UNTRAINED = "untrained"
UNKNOWN = "unknown"
STATUSES = (TRAINED, UNTRAINED, UNKNOWN)

AUTO = "auto"
WEIGHTS_CHOICES = (AUTO, TRAINED, UNTRAINED)  # --weights: detect, or say what they are

DETECTED = "detected"
OVERRIDDEN = "--weights"


@dataclass
class Weights:
    """Trained, untrained or unknown, with the reason in words and each piece of evidence behind it."""

    status: str  # one of STATUSES
    reason: str  # one sentence: why this status
    evidence: list[str] = field(default_factory=list)  # each observation, in words
    source: str = DETECTED  # DETECTED, or OVERRIDDEN when --weights set it
    detected: str | None = None  # what detection said, when --weights overrode it
    layers_checked: int = 0  # weight tensors tested against the default initialisations
    layers_at_init: int = 0  # of those, the ones that look like a fresh draw
    batchnorms: int = 0  # BatchNorm layers with running statistics
    batchnorms_at_init: int = 0  # of those, the ones still at mean 0, var 1, 0 batches tracked

    @property
    def untrained(self) -> bool:
        """Verdicts that depend on the weights (output SQNR, per-layer error, too lossy) are not judged."""
        return self.status == UNTRAINED

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape (check and compare alike): every field, and the header's note."""
        return {**asdict(self), "note": self.note()}

    def note(self) -> str | None:
        """The line every report header and the JSON carry when accuracy is not judged (None otherwise)."""
        if not self.untrained:
            return None
        how = "set by --weights untrained" if self.source == OVERRIDDEN else self.reason
        return (
            f"untrained weights ({how}): SQNR and per-layer error describe a random draw, not a trained model, so "
            "accuracy is not judged (speed findings hold). To judge accuracy, run with the trained checkpoint loaded, "
            "and define `evaluate(model)` and `calibration_data()` on real data; --weights trained overrides this"
        )


def overridden(detected: Weights, choice: str) -> Weights:
    """``--weights trained|untrained``: the user's word, keeping what detection said; ``auto`` keeps detection."""
    if choice == AUTO:
        return detected
    if choice not in (TRAINED, UNTRAINED):
        raise ValueError(f"--weights must be one of {', '.join(WEIGHTS_CHOICES)}, not {choice!r}")
    return Weights(
        status=choice,
        reason=f"--weights {choice} (detection said {detected.status}: {detected.reason})",
        evidence=list(detected.evidence),
        source=OVERRIDDEN,
        detected=detected.status,
        layers_checked=detected.layers_checked,
        layers_at_init=detected.layers_at_init,
        batchnorms=detected.batchnorms,
        batchnorms_at_init=detected.batchnorms_at_init,
    )


def accuracy_judged(weights: Weights | None) -> bool:
    """An accuracy verdict means something: the weights are not known to be untrained."""
    return weights is None or not weights.untrained
