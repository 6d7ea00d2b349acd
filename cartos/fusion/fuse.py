"""One add event's evidence → one :class:`~cartos.fusion.answer.FusedAnswer`.

Two paths, because a listed barcode changes what the question is:

* **Scanned and listed.** The barcode is authoritative for identity: it is a
  check-digit-verified code, far more reliable than a camera. The camera and
  the scale can only raise alerts: if the scale's delta fits no quantity of
  the scanned SKU, ``weight_mismatch`` (the identity stands, the shopper
  confirms); if *both* the camera and the scale point at another SKU with
  high confidence, ``ticket_switch`` (a label swapped onto a dearer item).
  One disagreeing sensor is never enough for a ticket switch: the camera
  alone is wrong often enough and so is a scale reading alone.
* **Camera × scale** (no scan, or a scan the catalogue does not list). The
  fused posterior's features go through the fitted calibration to a
  confidence, and the same tiers as recognition follow. ``accept`` needs the
  calibrated confidence to clear the fitted threshold *and* the weight to
  fit; an item that is probably not in the catalogue ends ``unknown`` with an
  ``unscanned`` alert when weight was added, so an unknown item is never
  silently added except at the calibrated risk. Sold-by-weight items without
  a label are never accepted from the camera: the shopper picks from ranked
  suggestions.
"""

from __future__ import annotations

import math
from collections import defaultdict

from cartos.fusion.answer import (
    BARCODE,
    TICKET_SWITCH,
    UNLISTED_BARCODE,
    UNSCANNED,
    VISION,
    WEIGHT,
    WEIGHT_MISMATCH,
    Alert,
    FusedAnswer,
    Suggestion,
)
from cartos.fusion.catalogue_view import CatalogueItem, CatalogueView
from cartos.fusion.evidence import BarcodeEvidence, VisionEvidence, WeightEvidence
from cartos.fusion.policy import FusionPolicy
from cartos.fusion.posterior import FusedPosterior, ScoredCandidate, fused_posterior

SUGGESTIONS = 5
CAMERA_CLAIM = 0.5
"""Camera probability above which an unknown answer also reports the camera's SKU's weight."""
LABEL_WEIGHT_TOLERANCE = 0.02
"""Relative spread allowed between a weight label's grams and the scale's delta."""


def fuse(
    vision: VisionEvidence | None,
    weight: WeightEvidence | None,
    barcode: BarcodeEvidence | None,
    catalogue: CatalogueView,
    policy: FusionPolicy,
) -> FusedAnswer:
    """Decide one add event from whatever evidence arrived (any of the three may be None)."""
    evidence = [
        name
        for name, present in ((VISION, vision), (WEIGHT, weight), (BARCODE, barcode))
        if present is not None
    ]
    post = fused_posterior(vision, weight, barcode, catalogue, policy.model)
    if post.barcode_sku is not None and barcode is not None:
        return _scanned(post.barcode_sku, vision, weight, barcode, catalogue, policy, evidence)
    return _camera_and_scale(post, weight, catalogue, policy, evidence)


def _label_contradicts(
    label_g: float, weight: WeightEvidence, policy: FusionPolicy
) -> tuple[bool, float]:
    wm = policy.model.weight
    sd = math.hypot(max(weight.sigma_g, wm.scale_noise_floor_g), LABEL_WEIGHT_TOLERANCE * label_g)
    z = (weight.delta_g - label_g) / sd
    return abs(z) > wm.mismatch_z, z


def _scanned(
    sku: str,
    vision: VisionEvidence | None,
    weight: WeightEvidence | None,
    barcode: BarcodeEvidence,
    catalogue: CatalogueView,
    policy: FusionPolicy,
    evidence: list[str],
) -> FusedAnswer:
    item = catalogue.get(sku) or CatalogueItem(sku)
    wm = policy.model.weight
    quantity = 1
    weight_contradicts = False
    weight_note = "no weight"
    label = barcode.label_weight_g
    if weight is not None and label is not None:
        weight_contradicts, z = _label_contradicts(label, weight, policy)
        weight_note = f"label {label:.0f} g vs scale {weight.delta_g:.0f} g (z={z:+.1f})"
    elif weight is not None and not item.sold_by_weight:
        fit = wm.fit(weight.delta_g, weight.sigma_g, item.weight_g, item.weight_tol_g)
        weight_contradicts = fit.contradicts(wm.mismatch_z)
        if fit.informative and not weight_contradicts:
            quantity = fit.quantity
        weight_note = (
            f"{weight.delta_g:.0f} g fits {fit.quantity} x {item.weight_g:.0f} g"
            if fit.informative and not weight_contradicts
            else f"{weight.delta_g:.0f} g fits no quantity of {item.weight_g} g"
            if fit.informative
            else "no nominal weight listed"
        )
    measured = weight.delta_g if weight is not None else label

    camera_scale = fused_posterior(vision, weight, None, catalogue, policy.model)
    other = camera_scale.top
    vision_contradicts = (
        vision is not None
        and vision.top_sku not in (None, sku)
        and vision.probability(sku) <= policy.vision_contradiction
    )
    if weight_contradicts and vision_contradicts and other is not None and other.sku != sku:
        other_conf = (
            policy.confidence(camera_scale.features()) if policy.calibrated else other.probability
        )
        if other_conf >= policy.ticket_switch_probability:
            return _answer(
                "confirm",
                other,
                other_conf,
                catalogue,
                camera_scale,
                evidence,
                policy,
                measured,
                alerts=[
                    Alert(
                        TICKET_SWITCH,
                        f"barcode says {sku}, camera and scale say {other.sku} "
                        f"(p={other_conf:.3f}; {weight_note})",
                    )
                ],
                reason=f"ticket switch suspected: scanned {sku}, looks and weighs like {other.sku}",
            )
    if weight_contradicts:
        return FusedAnswer(
            decision="confirm",
            sku=sku,
            confidence=policy.barcode_confidence,
            quantity=1,
            family=item.family,
            brand=item.brand,
            weight_g=measured,
            alerts=[Alert(WEIGHT_MISMATCH, f"scanned {sku}: {weight_note}")],
            evidence=evidence,
            reason=f"barcode identifies {sku} but the weight does not fit: confirm",
            calibrated=policy.calibrated,
        )
    agrees = "camera disagrees" if vision_contradicts else "camera consistent"
    return FusedAnswer(
        decision="accept",
        sku=sku,
        confidence=policy.barcode_confidence,
        quantity=quantity,
        family=item.family,
        brand=item.brand,
        unknown_score=0.0,
        weight_g=measured,
        evidence=evidence,
        reason=f"barcode identifies {sku}; {weight_note}; {agrees}",
        calibrated=policy.calibrated,
    )


def _group_fallback(
    post: FusedPosterior, catalogue: CatalogueView, threshold: float
) -> tuple[str, str] | None:
    """(level, group) when one family, else one brand, holds ``threshold`` of the mass."""
    for level in ("family", "brand"):
        mass: dict[str, float] = defaultdict(float)
        for c in post.candidates:
            item = catalogue.get(c.sku)
            group = getattr(item, level) if item is not None else None
            if group:
                mass[group] += c.probability
        if mass:
            group, value = max(mass.items(), key=lambda kv: (kv[1], kv[0]))
            if value >= threshold:
                return level, group
    return None


def _camera_and_scale(
    post: FusedPosterior,
    weight: WeightEvidence | None,
    catalogue: CatalogueView,
    policy: FusionPolicy,
    evidence: list[str],
) -> FusedAnswer:
    alerts: list[Alert] = []
    if post.barcode_unlisted:
        alerts.append(Alert(UNLISTED_BARCODE, "the scanned barcode is not in the catalogue"))
    added = weight is not None and weight.is_addition()
    top = post.top
    measured = weight.delta_g if weight is not None else None
    if top is None:
        if added:
            alerts.append(Alert(UNSCANNED, f"{measured:.0f} g added, nothing identified"))
        return FusedAnswer(
            decision="unknown",
            sku=None,
            confidence=0.0,
            level="none",
            unknown_score=post.unknown_probability,
            weight_g=measured,
            alerts=alerts,
            evidence=evidence,
            reason="no candidate from camera or scanner",
            calibrated=policy.calibrated,
        )
    item = catalogue.get(top.sku)
    conf = policy.confidence(post.features()) if policy.calibrated else top.probability
    sold_by_weight = item is not None and item.sold_by_weight
    mismatch = (
        weight is not None
        and not sold_by_weight
        and top.weight.contradicts(policy.model.weight.mismatch_z)
    )
    level = "sku"
    group: tuple[str, str] | None = None
    if post.unknown_probability >= policy.unknown_threshold:
        decision = "unknown"
        reason = f"probably not in the catalogue (p={post.unknown_probability:.3f})"
    elif sold_by_weight:
        decision = "confirm"
        reason = "sold by weight and not labelled: pick from the ranked suggestions"
    elif policy.calibrated and conf >= policy.accept_threshold and not mismatch:
        decision = "accept"
        reason = f"camera x scale: {top.sku} at {conf:.4f}" + _weight_note(top, weight)
    elif conf >= policy.confirm_threshold:
        decision = "confirm"
        reason = f"{top.sku} likely ({conf:.3f}) but below the accept bar" + _weight_note(
            top, weight
        )
    elif (group := _group_fallback(post, catalogue, policy.group_threshold)) is not None:
        decision, (level, name) = "fallback", group
        reason = f"SKU unsure ({conf:.3f}); {level} {name} likely"
    else:
        decision = "unknown"
        reason = f"no SKU or group is likely enough (best {top.sku} at {conf:.3f})"
    if mismatch and (decision != "unknown" or top.vision_probability >= CAMERA_CLAIM):
        alerts.append(
            Alert(
                WEIGHT_MISMATCH,
                f"{measured:.0f} g fits no quantity of {top.sku}"
                + (f" ({item.weight_g:.0f} g)" if item and item.weight_g else ""),
            )
        )
    if decision == "unknown" and added:
        alerts.append(Alert(UNSCANNED, f"{measured:.0f} g added, no catalogue item identified"))
        camera_top = max(post.candidates, key=lambda c: (c.vision_probability, c.sku))
        if (
            not mismatch
            and camera_top.vision_probability >= CAMERA_CLAIM
            and camera_top.weight.contradicts(policy.model.weight.mismatch_z)
        ):
            alerts.append(
                Alert(
                    WEIGHT_MISMATCH,
                    f"camera says {camera_top.sku} but {measured:.0f} g fits no quantity of it",
                )
            )
    answer = _answer(
        decision,
        top,
        conf,
        catalogue,
        post,
        evidence,
        policy,
        measured,
        alerts=alerts,
        reason=reason,
        level=level,
    )
    if decision == "fallback" and group is not None:
        answer.family = group[1] if group[0] == "family" else None
        answer.brand = group[1] if group[0] == "brand" else None
    return answer


def _weight_note(top: ScoredCandidate, weight: WeightEvidence | None) -> str:
    if weight is None or not top.weight.informative:
        return ""
    return f"; weight fits {top.weight.quantity} x (z={top.weight.z:+.1f})"


def _answer(
    decision: str,
    top: ScoredCandidate,
    confidence: float,
    catalogue: CatalogueView,
    post: FusedPosterior,
    evidence: list[str],
    policy: FusionPolicy,
    measured: float | None,
    *,
    alerts: list[Alert],
    reason: str,
    level: str = "sku",
) -> FusedAnswer:
    item = catalogue.get(top.sku)
    return FusedAnswer(
        decision=decision,
        sku=top.sku,
        confidence=confidence,
        quantity=top.weight.quantity if top.weight.informative else 1,
        level=level,
        family=item.family if item else None,
        brand=item.brand if item else None,
        unknown_score=post.unknown_probability,
        weight_g=measured,
        suggestions=[
            Suggestion(c.sku, c.probability, c.weight.quantity if c.weight.informative else 1)
            for c in post.candidates[:SUGGESTIONS]
        ],
        alerts=alerts,
        evidence=evidence,
        reason=reason,
        calibrated=policy.calibrated,
    )
