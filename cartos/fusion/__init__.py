"""Fusion: camera × scale × scanner → one decision per item event.

A camera alone is wrong too often to automate everything, a scale alone
cannot tell two 330 g cans apart, and a scan happens only when the shopper
bothers. Combined they can: the camera proposes candidates with calibrated
probabilities, the scale's weight delta confirms or rules them out (and says
how many), and a listed barcode settles identity unless camera and scale both
contradict it. This package is pure (no I/O besides loading a policy file):
the cart runtime hands it evidence, it hands back answers in recognition's
tiers plus alerts for staff.

* :mod:`~cartos.fusion.evidence`: typed inputs, multi-frame vision
* :mod:`~cartos.fusion.weight_model`: weight likelihood with quantities
* :mod:`~cartos.fusion.posterior`: the fused posterior
* :mod:`~cartos.fusion.policy`: fitted calibration and thresholds (JSON)
* :mod:`~cartos.fusion.fuse`: add events → :class:`FusedAnswer`
* :mod:`~cartos.fusion.removal`: removals → which basket line left
"""

from cartos.fusion.answer import ALERT_KINDS, Alert, FusedAnswer, Suggestion
from cartos.fusion.catalogue_view import CatalogueItem, CatalogueView
from cartos.fusion.errors import EvidenceError, FusionCalibrationError, FusionError
from cartos.fusion.evidence import BarcodeEvidence, VisionEvidence, WeightEvidence
from cartos.fusion.fuse import fuse
from cartos.fusion.policy import (
    DEFAULT_UNKNOWN_SHARE,
    CalibrationEvent,
    FusionPolicy,
    FusionTargets,
    fit_fusion_calibration,
)
from cartos.fusion.posterior import EvidenceModel, FusedPosterior, fused_posterior
from cartos.fusion.removal import BasketLine, RemovalAnswer, match_removal
from cartos.fusion.weight_model import QuantityFit, WeightModel

__all__ = [
    "ALERT_KINDS",
    "DEFAULT_UNKNOWN_SHARE",
    "Alert",
    "BarcodeEvidence",
    "BasketLine",
    "CalibrationEvent",
    "CatalogueItem",
    "CatalogueView",
    "EvidenceError",
    "EvidenceModel",
    "FusedAnswer",
    "FusedPosterior",
    "FusionCalibrationError",
    "FusionError",
    "FusionPolicy",
    "FusionTargets",
    "QuantityFit",
    "RemovalAnswer",
    "Suggestion",
    "VisionEvidence",
    "WeightEvidence",
    "WeightModel",
    "fit_fusion_calibration",
    "fuse",
    "fused_posterior",
    "match_removal",
]
