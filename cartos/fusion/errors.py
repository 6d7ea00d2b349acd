"""Errors of the fusion layer.

Fusion sits between sensors and the basket: a malformed piece of evidence (a
probability above one, a negative scale noise) is a bug upstream that must
surface loudly instead of skewing a posterior, and a calibration that cannot
be fitted must stop a deployment rather than ship made-up thresholds.
"""

from __future__ import annotations

from cartos.errors import CartosError


class FusionError(CartosError):
    """Base class for fusion failures."""


class EvidenceError(FusionError):
    """A piece of evidence is inconsistent (probabilities, weights, frames)."""


class FusionCalibrationError(FusionError):
    """Fusion calibration cannot be fitted or a stored one cannot be read."""
