"""What fusion hands to the basket: one decision per item event, with its reasons.

The decision tiers are recognition's (``accept``/``confirm``/``fallback``/
``unknown``), so the basket and the shopper's screen handle camera-only and
fused answers alike. Alerts are separate from the tier because they go to a
different audience (store staff) and can accompany any tier: a
``weight_mismatch`` may come with a confirmed SKU, ``unscanned`` with an
``unknown``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TICKET_SWITCH = "ticket_switch"
"""Scanned barcode says X; camera and scale together say Y with high confidence."""
WEIGHT_MISMATCH = "weight_mismatch"
"""The scale's delta fits no quantity of the identified SKU."""
UNSCANNED = "unscanned"
"""Something was put in, and nothing in the catalogue was identified."""
UNLISTED_BARCODE = "unlisted_barcode"
"""A valid barcode was scanned that the catalogue does not list."""
REMOVED_NEVER_ADDED = "removed_never_added"
"""Weight left the basket that no item in it explains."""

ALERT_KINDS: tuple[str, ...] = (
    TICKET_SWITCH,
    WEIGHT_MISMATCH,
    UNSCANNED,
    UNLISTED_BARCODE,
    REMOVED_NEVER_ADDED,
)

VISION = "vision"
WEIGHT = "weight"
BARCODE = "barcode"


@dataclass(frozen=True)
class Alert:
    kind: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class Suggestion:
    """One ranked alternative shown to the shopper or to staff."""

    sku: str
    probability: float
    quantity: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "probability": round(self.probability, 4),
            "quantity": self.quantity,
        }


@dataclass
class FusedAnswer:
    """One item event, decided.

    ``confidence`` is the calibrated P(``sku`` is right) for camera × scale
    answers and :attr:`~cartos.fusion.policy.FusionPolicy.barcode_confidence`
    for barcode-identified ones. ``weight_g`` is the measured delta, which is
    what a sold-by-weight item is priced on. ``evidence`` names the sensors
    that contributed, ``reason`` says in one line why this tier.
    """

    decision: str
    sku: str | None
    confidence: float
    quantity: int = 1
    level: str = "sku"
    family: str | None = None
    brand: str | None = None
    unknown_score: float = 0.0
    weight_g: float | None = None
    suggestions: list[Suggestion] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    reason: str = ""
    calibrated: bool = True

    @property
    def alert_kinds(self) -> list[str]:
        return [a.kind for a in self.alerts]

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "sku": self.sku,
            "confidence": round(self.confidence, 4),
            "quantity": self.quantity,
            "level": self.level,
            "family": self.family,
            "brand": self.brand,
            "unknown_score": round(self.unknown_score, 4),
            "weight_g": None if self.weight_g is None else round(self.weight_g, 1),
            "suggestions": [s.to_dict() for s in self.suggestions],
            "alerts": [a.to_dict() for a in self.alerts],
            "evidence": list(self.evidence),
            "reason": self.reason,
            "calibrated": self.calibrated,
        }
