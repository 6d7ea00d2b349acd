"""Typed evidence for one item event: what the camera, the scale and the scanner said.

Fusion multiplies probabilities, so every input is normalised here, once,
into the shape the posterior needs: the camera's answer becomes a
probability per candidate SKU plus an explicit "not in the catalogue" mass,
the scale's reading a signed delta with its own noise, and a scan a validated
:class:`~cartos.sensors.barcode.Barcode`. Nothing here looks at the
catalogue; that is the posterior's job.

Several frames of the same item are combined as a tempered product of
experts: frames of one item are strongly correlated (same pose, same light),
so n agreeing frames count as less than n independent witnesses; consistent
top-1 answers sharpen the posterior, disagreeing ones flatten it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cartos.fusion.errors import EvidenceError
from cartos.inference.recognizer import UNCALIBRATED_TEMPERATURE, Recognition
from cartos.sensors.barcode import Barcode, MeasureKind

DEFAULT_FRAME_CORRELATION = 0.5
"""How much the second and later frames of one item repeat the first (0: independent)."""

MIN_TAIL_PROBABILITY = 1e-4
"""Smallest probability the camera leaves for a SKU it did not rank at all."""

DEFAULT_SCALE_SIGMA_G = 1.0
"""Standard deviation of a settled weight delta on the cart's load cell, in grams."""


@dataclass(frozen=True)
class VisionEvidence:
    """The camera's belief about one item: P(sku) per candidate and P(not in catalogue).

    ``posterior`` holds the known-item candidates; together with
    ``unknown_mass`` it sums to at most one. A SKU outside ``posterior`` is
    given ``tail`` (the camera did not rank it, which is not the same as
    ruling it out). ``frames`` and ``agreement`` (share of frames whose top-1
    is the combined top-1) say how the belief was formed.
    """

    posterior: Mapping[str, float]
    unknown_mass: float
    tail: float = MIN_TAIL_PROBABILITY
    frames: int = 1
    agreement: float = 1.0
    recognition: Recognition | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        values = [*self.posterior.values(), self.unknown_mass, self.tail]
        if any(not math.isfinite(v) or v < 0.0 or v > 1.0 for v in values):
            raise EvidenceError(f"vision probabilities must lie in [0, 1], got {values}")
        total = sum(self.posterior.values()) + self.unknown_mass
        if total > 1.0 + 1e-6:
            raise EvidenceError(f"vision probabilities sum to {total:.6f} > 1")
        if self.frames < 1 or not 0.0 <= self.agreement <= 1.0:
            raise EvidenceError(
                f"frames must be >= 1 and agreement in [0, 1], got {self.frames}, {self.agreement}"
            )

    @property
    def top_sku(self) -> str | None:
        """The camera's best SKU, or None when it ranked nothing."""
        if not self.posterior:
            return None
        return max(self.posterior.items(), key=lambda kv: (kv[1], kv[0]))[0]

    def probability(self, sku: str) -> float:
        """P(item is ``sku``) according to the camera (``tail`` for an unranked SKU)."""
        return max(self.posterior.get(sku, 0.0), self.tail)

    @classmethod
    def from_recognition(
        cls, recognition: Recognition, temperature: float = UNCALIBRATED_TEMPERATURE
    ) -> VisionEvidence:
        """One frame: the calibrated top-1 confidence, the unknown score, the rest by softmax.

        ``confidence`` is P(top-1 right) and ``unknown_score`` P(not in the
        catalogue); what is left over is shared by the other top-k
        candidates in proportion to a softmax of their scores at the
        recogniser's ``temperature``.
        """
        if temperature <= 0.0:
            raise EvidenceError(f"temperature must be positive, got {temperature}")
        unknown = min(max(recognition.unknown_score, 0.0), 1.0)
        if not recognition.topk:
            return cls({}, unknown, recognition=recognition)
        top = recognition.topk[0]
        confidence = min(max(recognition.confidence, 0.0), 1.0 - unknown)
        rest = max(0.0, 1.0 - unknown - confidence)
        others = [c for c in recognition.topk[1:] if c.sku != top.sku]
        posterior = {top.sku: confidence}
        if others:
            best = max(c.score for c in others)
            weights = [math.exp((c.score - best) / temperature) for c in others]
            norm = sum(weights)
            for c, w in zip(others, weights, strict=True):
                posterior[c.sku] = posterior.get(c.sku, 0.0) + rest * w / norm
        floor = max(MIN_TAIL_PROBABILITY, 0.5 * min(posterior.values()))
        return cls(posterior, unknown, tail=min(floor, 1.0), recognition=recognition)

    @classmethod
    def from_recognitions(
        cls,
        recognitions: Sequence[Recognition],
        temperature: float = UNCALIBRATED_TEMPERATURE,
        frame_correlation: float = DEFAULT_FRAME_CORRELATION,
    ) -> VisionEvidence:
        """Several frames of one item, combined (see the module docstring)."""
        if not recognitions:
            raise EvidenceError("at least one recognition is needed")
        frames = [cls.from_recognition(r, temperature) for r in recognitions]
        return combine_frames(frames, frame_correlation)


def combine_frames(
    frames: Sequence[VisionEvidence], frame_correlation: float = DEFAULT_FRAME_CORRELATION
) -> VisionEvidence:
    """Tempered product of the frames' beliefs, renormalised.

    Each frame's log-probability is weighted by ``1 / (1 + rho (n - 1))``: one
    frame counts fully, n perfectly correlated frames (rho = 1) count as one.
    """
    if not frames:
        raise EvidenceError("at least one frame is needed")
    if not 0.0 <= frame_correlation <= 1.0:
        raise EvidenceError(f"frame correlation must lie in [0, 1], got {frame_correlation}")
    if len(frames) == 1:
        return frames[0]
    n = len(frames)
    exponent = 1.0 / (1.0 + frame_correlation * (n - 1))
    skus = sorted({s for f in frames for s in f.posterior})
    log_mass: dict[str | None, float] = {}
    for sku in [*skus, None]:
        total = 0.0
        for f in frames:
            p = f.unknown_mass if sku is None else f.probability(sku)
            total += exponent * math.log(max(p, 1e-12))
        log_mass[sku] = total
    tail_log = sum(exponent * math.log(max(f.tail, 1e-12)) for f in frames)
    top = max(log_mass.values())
    weights = {k: math.exp(v - top) for k, v in log_mass.items()}
    norm = sum(weights.values())
    posterior = {s: weights[s] / norm for s in skus}
    unknown = weights[None] / norm
    combined_top = max(posterior.items(), key=lambda kv: (kv[1], kv[0]))[0] if posterior else None
    agree = sum(1 for f in frames if f.top_sku == combined_top) / n
    tail = min(math.exp(tail_log - top) / norm, min(posterior.values(), default=1.0))
    return VisionEvidence(
        posterior=posterior,
        unknown_mass=unknown,
        tail=max(tail, 1e-12),
        frames=sum(f.frames for f in frames),
        agreement=agree,
        recognition=frames[0].recognition,
    )


@dataclass(frozen=True)
class WeightEvidence:
    """A settled weight change of the basket: positive when something was put in.

    ``sigma_g`` is the scale's own noise on a settled delta (one standard
    deviation), not the item's packaging tolerance.
    """

    delta_g: float
    sigma_g: float = DEFAULT_SCALE_SIGMA_G

    def __post_init__(self) -> None:
        if not math.isfinite(self.delta_g):
            raise EvidenceError(f"weight delta must be finite, got {self.delta_g}")
        if not math.isfinite(self.sigma_g) or self.sigma_g <= 0.0:
            raise EvidenceError(f"scale sigma must be positive, got {self.sigma_g}")

    def is_addition(self, sigmas: float = 3.0) -> bool:
        """Whether the scale saw something put in (more than ``sigmas`` of its noise)."""
        return self.delta_g > sigmas * self.sigma_g


@dataclass(frozen=True)
class BarcodeEvidence:
    """One validated scan inside the event window."""

    barcode: Barcode

    @property
    def lookup_key(self) -> str:
        return self.barcode.lookup_key

    @property
    def label_weight_g(self) -> float | None:
        """Net weight printed in an in-store weight label, if the code carries one."""
        measure = self.barcode.variable_measure
        if measure is not None and measure.kind is MeasureKind.WEIGHT:
            return float(measure.value)
        return None
