"""The fused posterior: P(item = s | camera, scale, scanner) for each candidate, and P(unknown).

Bayes with the camera as the prior: the camera's calibrated probabilities
(top-k SKUs plus "not in the catalogue") are multiplied by the weight
likelihood ratio of each hypothesis (:mod:`cartos.fusion.weight_model`) and
by a barcode likelihood, then renormalised. An unknown item's weight is
unknown, so it always gets the background weight density; a SKU whose
nominal weight fits gains, one that does not fit loses.

The barcode likelihood is small and explicit: a scan that is listed under
SKU X is almost impossible for any other listed SKU (the check digits were
verified) and unlikely for an item outside the catalogue; a valid scan that
is *not* listed points at an item outside the catalogue, or at a SKU whose
barcode the catalogue lacks. Barcode *authority* (the scanned SKU wins unless
camera and scale both contradict it) is a decision rule in
:mod:`cartos.fusion.fuse`, applied on top of this posterior.

The posterior is not yet a calibrated confidence: :meth:`FusedPosterior.features`
feeds the fitted mapping in :mod:`cartos.fusion.policy`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cartos.fusion.catalogue_view import CatalogueView
from cartos.fusion.evidence import BarcodeEvidence, VisionEvidence, WeightEvidence
from cartos.fusion.weight_model import UNINFORMATIVE, QuantityFit, WeightModel

NO_VISION_UNKNOWN = 0.5
"""Camera prior of "not in the catalogue" when no crop was seen (barcode-only events)."""

FEATURE_NAMES: tuple[str, ...] = (
    "logit_top",
    "logit_unknown",
    "weight_log_ratio_top",
    "logit_vision_top",
    "logit_vision_unknown",
)


@dataclass(frozen=True)
class EvidenceModel:
    """Likelihood parameters of the fused posterior (stored with the fusion policy)."""

    weight: WeightModel = field(default_factory=WeightModel)
    listed_scan_other_sku: float = 1e-4
    """P(scan listed under X | item is another SKU): a misread that passes the check digit."""
    listed_scan_unknown: float = 1e-3
    """P(scan listed under X | item is not in the catalogue): relabelled goods."""
    unlisted_scan_listed_sku: float = 1e-4
    """P(valid scan listed nowhere | item is a SKU whose barcode is listed)."""
    unlisted_scan_unlisted_sku: float = 0.1
    """P(valid scan listed nowhere | item is a SKU with no barcode on record)."""


@dataclass(frozen=True)
class ScoredCandidate:
    """One hypothesis "the item is ``sku``" with what each sensor said about it."""

    sku: str
    probability: float
    vision_probability: float
    weight: QuantityFit
    barcode_match: bool | None
    """True: the scan is listed for this SKU; False: it contradicts it; None: no scan."""


@dataclass(frozen=True)
class FusedPosterior:
    """Candidates best first, the unknown mass, and how the scan resolved."""

    candidates: list[ScoredCandidate]
    unknown_probability: float
    vision_unknown: float
    barcode_sku: str | None = None
    barcode_unlisted: bool = False

    @property
    def top(self) -> ScoredCandidate | None:
        return self.candidates[0] if self.candidates else None

    def features(self) -> np.ndarray:
        """Inputs of the calibration model (see :data:`FEATURE_NAMES`); needs a candidate."""
        top = self.top
        if top is None:
            raise ValueError("no candidate to compute features for")
        return np.array(
            [
                _logit(top.probability),
                _logit(self.unknown_probability),
                min(max(top.weight.log_ratio, -30.0), 10.0),
                _logit(top.vision_probability),
                _logit(self.vision_unknown),
            ]
        )


def _logit(p: float) -> float:
    q = min(max(p, 1e-9), 1.0 - 1e-9)
    return math.log(q / (1.0 - q))


def fused_posterior(
    vision: VisionEvidence | None,
    weight: WeightEvidence | None,
    barcode: BarcodeEvidence | None,
    catalogue: CatalogueView,
    model: EvidenceModel,
    *,
    use_barcode: bool = True,
) -> FusedPosterior:
    """Combine the evidence; ``use_barcode=False`` gives the camera × scale view alone."""
    scan = barcode if use_barcode else None
    barcode_sku = catalogue.sku_for_key(scan.lookup_key) if scan is not None else None
    unlisted = scan is not None and barcode_sku is None

    skus: list[str] = []
    if vision is not None:
        skus.extend(sorted(vision.posterior, key=lambda s: (-vision.posterior[s], s)))
    if barcode_sku is not None and barcode_sku not in skus:
        skus.append(barcode_sku)
    vision_unknown = vision.unknown_mass if vision is not None else NO_VISION_UNKNOWN

    def vision_p(sku: str) -> float:
        if vision is None:
            return 1.0 - NO_VISION_UNKNOWN
        return vision.probability(sku)

    def barcode_factor(sku: str | None) -> float:
        if scan is None:
            return 1.0
        if barcode_sku is not None:
            if sku == barcode_sku:
                return 1.0
            return model.listed_scan_unknown if sku is None else model.listed_scan_other_sku
        if sku is None:
            return 1.0
        item = catalogue.get(sku)
        listed = item is not None and bool(item.barcode_keys)
        return model.unlisted_scan_listed_sku if listed else model.unlisted_scan_unlisted_sku

    log_background = (
        catalogue.weight_background.log_density(weight.delta_g) if weight is not None else 0.0
    )
    fits: dict[str, QuantityFit] = {}
    logs: dict[str | None, float] = {}
    for sku in skus:
        item = catalogue.get(sku)
        fit = UNINFORMATIVE
        if weight is not None and item is not None:
            fit = model.weight.fit(
                weight.delta_g,
                weight.sigma_g,
                item.weight_g,
                item.weight_tol_g,
                log_background=log_background,
            )
        fits[sku] = fit
        logs[sku] = math.log(max(vision_p(sku), 1e-300)) + fit.log_ratio
        logs[sku] += math.log(barcode_factor(sku))
    logs[None] = math.log(max(vision_unknown, 1e-300)) + math.log(barcode_factor(None))
    top = max(logs.values())
    weights = {k: math.exp(v - top) for k, v in logs.items()}
    norm = sum(weights.values())
    candidates = [
        ScoredCandidate(
            sku=s,
            probability=weights[s] / norm,
            vision_probability=vision_p(s),
            weight=fits[s],
            barcode_match=None if scan is None else s == barcode_sku,
        )
        for s in skus
    ]
    candidates.sort(key=lambda c: (-c.probability, c.sku))
    return FusedPosterior(
        candidates=candidates,
        unknown_probability=weights[None] / norm,
        vision_unknown=vision_unknown,
        barcode_sku=barcode_sku,
        barcode_unlisted=unlisted,
    )
