"""How likely a measured weight delta is under "this is n packs of SKU s".

A catalogue's ``weight_tol_g`` is a packaging tolerance, i.e. the band that
nearly every pack falls into, so it is read as ``tolerance_sigmas`` standard
deviations of the pack weight. n packs add up: mean ``n * weight_g``,
variance ``n * sigma_item**2`` plus the scale's own noise (never below
``scale_noise_floor_g``, a load cell is never perfect even when a profile
claims it is). The quantity is unknown, so the likelihood is a mixture over
n = 1..``max_quantity`` with a geometric prior (one item at a time is by far
the most common event).

Likelihoods are densities in 1/g; they are reported as log ratios against
the *background* density: the weight of an item nothing is known about. A
SKU without a nominal weight therefore contributes exactly the background,
i.e. no information, and an item of unknown identity is scored against the
same background, so the weight can only move belief by saying "this fits" or
"this does not fit". The background is a uniform over ``background_range_g``
or, better, :class:`WeightBackground`: a smoothed density of the
catalogue's own weights. Items not in the catalogue weigh like items in it
(cans, boxes, bottles), so a fitting weight is weaker evidence at 330 g,
where many products sit, than at 2.7 kg, where few do.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from cartos.fusion.errors import EvidenceError

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True)
class QuantityFit:
    """How a delta fits one SKU: log likelihood ratio, best quantity, its residual."""

    log_ratio: float
    """log(p(delta | SKU) / p(delta | background)); 0 when the SKU has no nominal weight."""
    quantity: int
    quantity_probability: float
    z: float
    """Standardised residual at the best quantity (0 when uninformative)."""
    informative: bool

    def contradicts(self, mismatch_z: float) -> bool:
        """Whether no quantity of the SKU explains the delta."""
        return self.informative and abs(self.z) > mismatch_z


UNINFORMATIVE = QuantityFit(
    log_ratio=0.0, quantity=1, quantity_probability=1.0, z=0.0, informative=False
)


@dataclass(frozen=True)
class WeightModel:
    """Parameters of the weight likelihood (stored with the fusion policy)."""

    tolerance_sigmas: float = 2.5
    scale_noise_floor_g: float = 1.0
    max_quantity: int = 12
    quantity_decay: float = 0.3
    """Prior P(n) is proportional to quantity_decay ** (n - 1)."""
    background_range_g: float = 5000.0
    mismatch_z: float = 4.0
    """Residual (in standard deviations) beyond which weight contradicts an identity."""

    def __post_init__(self) -> None:
        if self.tolerance_sigmas <= 0 or self.scale_noise_floor_g <= 0:
            raise EvidenceError("tolerance_sigmas and scale_noise_floor_g must be positive")
        if self.max_quantity < 1 or not 0.0 < self.quantity_decay <= 1.0:
            raise EvidenceError("max_quantity must be >= 1 and quantity_decay in (0, 1]")
        if self.background_range_g <= 0 or self.mismatch_z <= 0:
            raise EvidenceError("background_range_g and mismatch_z must be positive")

    @property
    def log_background(self) -> float:
        return -math.log(self.background_range_g)

    def item_sigma(self, weight_g: float, weight_tol_g: float | None) -> float:
        """One pack's weight spread; 2 % of the nominal when the catalogue gives no tolerance."""
        tol = weight_tol_g if weight_tol_g is not None and weight_tol_g > 0 else 0.02 * weight_g
        return tol / self.tolerance_sigmas

    def quantity_prior(self) -> list[float]:
        raw = [self.quantity_decay ** (n - 1) for n in range(1, self.max_quantity + 1)]
        total = sum(raw)
        return [p / total for p in raw]

    def fit(
        self,
        delta_g: float,
        scale_sigma_g: float,
        weight_g: float | None,
        weight_tol_g: float | None = None,
        max_quantity: int | None = None,
        log_background: float | None = None,
    ) -> QuantityFit:
        """Fit ``delta_g`` (a positive amount) as 1..n packs of nominal ``weight_g``.

        ``log_background`` is the log density the fit is compared with
        (default: the uniform over ``background_range_g``).
        """
        if weight_g is None or not math.isfinite(weight_g) or weight_g <= 0:
            return UNINFORMATIVE
        top_n = self.max_quantity if max_quantity is None else max(1, max_quantity)
        prior = self.quantity_prior()[:top_n]
        norm_prior = sum(prior)
        item_var = self.item_sigma(weight_g, weight_tol_g) ** 2
        scale_var = max(scale_sigma_g, self.scale_noise_floor_g) ** 2
        logs: list[float] = []
        zs: list[float] = []
        for n, p in enumerate(prior, start=1):
            sd = math.sqrt(n * item_var + scale_var)
            z = (delta_g - n * weight_g) / sd
            zs.append(z)
            logs.append(math.log(p / norm_prior) - _LOG_SQRT_2PI - math.log(sd) - 0.5 * z * z)
        top = max(logs)
        total = top + math.log(sum(math.exp(v - top) for v in logs))
        best = max(range(len(logs)), key=lambda i: logs[i])
        background = self.log_background if log_background is None else log_background
        return QuantityFit(
            log_ratio=total - background,
            quantity=best + 1,
            quantity_probability=math.exp(logs[best] - total),
            z=zs[best],
            informative=True,
        )


@dataclass(frozen=True)
class WeightBackground:
    """Density of the weight of an item of unknown identity, learnt from the catalogue.

    A Gaussian kernel on every nominal weight (width ``relative_width`` of
    the weight, at least ``min_width_g``), mixed with a ``uniform_share`` of
    the uniform over ``range_g`` so that no weight is impossible.
    """

    means: tuple[float, ...]
    widths: tuple[float, ...]
    uniform_share: float = 0.2
    range_g: float = 5000.0

    @classmethod
    def from_weights(
        cls,
        weights: Iterable[float | None],
        relative_width: float = 0.15,
        min_width_g: float = 10.0,
        uniform_share: float = 0.2,
        range_g: float = 5000.0,
    ) -> WeightBackground:
        means = tuple(float(w) for w in weights if w is not None and w > 0)
        widths = tuple(max(relative_width * m, min_width_g) for m in means)
        return cls(means, widths, uniform_share if means else 1.0, range_g)

    def log_density(self, delta_g: float) -> float:
        uniform = self.uniform_share / self.range_g
        if not self.means:
            return math.log(uniform)
        mu = np.asarray(self.means)
        sd = np.asarray(self.widths)
        kernel = np.exp(-0.5 * ((delta_g - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        return math.log((1.0 - self.uniform_share) * float(kernel.mean()) + uniform)
