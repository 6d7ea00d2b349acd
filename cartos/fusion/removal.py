"""A weight decrease → which basket item left, how many, or an alert.

Removals are matched against what is *in the basket*, not the whole
catalogue: the hypotheses are "n of line i" for every line and every n up to
its quantity, plus "something that was never added" (a small prior; its
weight is scored against the background density). The weight likelihood is
the same quantity mixture as for additions; a line whose SKU has no nominal
weight falls back to the weight measured when it was added (how produce and
other weighed goods are matched). A crop of the removed item, when the
camera saw one, multiplies in its probability per SKU.

When the best explanation is "never added", the answer is ``unknown`` with a
``removed_never_added`` alert for staff: weight left the cart that no item in
it accounts for (a mis-registered add, or something taken from a neighbour's
cart).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from cartos.fusion.answer import REMOVED_NEVER_ADDED, VISION, WEIGHT, Alert, Suggestion
from cartos.fusion.catalogue_view import CatalogueView
from cartos.fusion.errors import EvidenceError
from cartos.fusion.evidence import VisionEvidence, WeightEvidence
from cartos.fusion.policy import FusionPolicy
from cartos.fusion.weight_model import QuantityFit

NEVER_ADDED_PRIOR = 0.02
"""Prior probability that a removal matches nothing in the basket."""


@dataclass(frozen=True)
class BasketLine:
    """One line of the basket: a SKU, how many, and the weight measured when added."""

    sku: str
    quantity: int = 1
    weight_g: float | None = None

    def __post_init__(self) -> None:
        if self.quantity < 1:
            raise EvidenceError(f"basket line {self.sku}: quantity must be >= 1")


@dataclass
class RemovalAnswer:
    """Which line lost how many items, or an alert that nothing in the basket fits."""

    decision: str
    sku: str | None
    quantity: int
    confidence: float
    candidates: list[Suggestion] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    reason: str = ""

    @property
    def alert_kinds(self) -> list[str]:
        return [a.kind for a in self.alerts]


def _line_fit(
    line: BasketLine,
    amount_g: float,
    weight: WeightEvidence,
    catalogue: CatalogueView,
    policy: FusionPolicy,
) -> QuantityFit:
    wm = policy.model.weight
    item = catalogue.get(line.sku)
    if item is not None and item.weight_g and not item.sold_by_weight:
        return wm.fit(amount_g, weight.sigma_g, item.weight_g, item.weight_tol_g, line.quantity)
    if line.weight_g is not None and line.weight_g > 0:
        unit = line.weight_g / line.quantity
        # measured twice (on the way in and out): the scale's noise counts twice
        noise = math.sqrt(2.0) * max(weight.sigma_g, wm.scale_noise_floor_g)
        return wm.fit(amount_g, noise, unit, wm.tolerance_sigmas * noise, line.quantity)
    return wm.fit(amount_g, weight.sigma_g, None)


def match_removal(
    weight: WeightEvidence,
    basket: Sequence[BasketLine],
    catalogue: CatalogueView,
    policy: FusionPolicy,
    vision: VisionEvidence | None = None,
    never_added_prior: float = NEVER_ADDED_PRIOR,
) -> RemovalAnswer:
    """Match a removal (``weight.delta_g`` < 0) against the basket's lines."""
    if weight.delta_g >= 0:
        raise EvidenceError(f"a removal needs a negative weight delta, got {weight.delta_g} g")
    amount = -weight.delta_g
    evidence = [WEIGHT] + ([VISION] if vision is not None else [])
    lines = [ln for ln in basket if ln.quantity > 0]
    logs: list[float] = []
    fits: list[QuantityFit] = []
    line_prior = (1.0 - never_added_prior) / max(1, len(lines))
    for line in lines:
        fit = _line_fit(line, amount, weight, catalogue, policy)
        fits.append(fit)
        score = math.log(line_prior) + fit.log_ratio
        if vision is not None:
            score += math.log(max(vision.probability(line.sku), 1e-12))
        logs.append(score)
    never = math.log(never_added_prior)
    if vision is not None:
        in_basket = {ln.sku for ln in lines}
        outside = vision.unknown_mass + sum(
            p for s, p in vision.posterior.items() if s not in in_basket
        )
        never += math.log(max(outside, 1e-12))
    top = max([*logs, never])
    weights = [math.exp(v - top) for v in logs]
    never_w = math.exp(never - top)
    norm = sum(weights) + never_w
    probs = [w / norm for w in weights]
    ranked = sorted(range(len(lines)), key=lambda i: -probs[i])
    candidates = [
        Suggestion(lines[i].sku, probs[i], fits[i].quantity if fits[i].informative else 1)
        for i in ranked[:5]
    ]
    mismatch_z = policy.model.weight.mismatch_z
    best = ranked[0] if ranked else None
    if best is None or never_w / norm >= probs[best] or fits[best].contradicts(mismatch_z):
        return RemovalAnswer(
            decision="unknown",
            sku=None,
            quantity=0,
            confidence=never_w / norm,
            candidates=candidates,
            alerts=[
                Alert(REMOVED_NEVER_ADDED, f"{amount:.0f} g removed; no basket item explains it")
            ],
            evidence=evidence,
            reason="the removed weight matches nothing in the basket",
        )
    line, fit, p = lines[best], fits[best], probs[best]
    quantity = fit.quantity if fit.informative else 1
    decision = "accept" if p >= policy.removal_accept_probability else "confirm"
    return RemovalAnswer(
        decision=decision,
        sku=line.sku,
        quantity=quantity,
        confidence=p,
        candidates=candidates,
        evidence=evidence,
        reason=f"{amount:.0f} g removed: {quantity} x {line.sku} (p={p:.3f})",
    )
