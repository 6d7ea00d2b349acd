"""Synthetic catalogues and add events with known ground truth, for fusion tests.

The camera is simulated at the level fusion sees it (a calibrated posterior
over a top-k plus an unknown mass), with realistic failure modes: a share of
known items whose top-1 is a look-alike, and unknown items the camera maps
onto some catalogue SKU with middling confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cartos.catalog.records import SkuRecord
from cartos.fusion import CalibrationEvent, CatalogueView, VisionEvidence, WeightEvidence
from cartos.synth import ean13_check_digit


def ean13(body12: str) -> str:
    return body12 + str(ean13_check_digit(body12))


def records(n: int, seed: int) -> list[SkuRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        weight = float(round(rng.uniform(40, 1500)))
        out.append(
            SkuRecord(
                sku=f"s{i:03d}",
                name=f"item {i}",
                barcode=ean13(f"400{i:09d}"),
                family=f"fam{i % 8}",
                brand=f"brand{i % 13}",
                weight_g=weight,
                weight_tol_g=max(5.0, round(0.03 * weight)),
            )
        )
    return out


@dataclass
class EventWorld:
    catalogue: CatalogueView
    skus: list[str]
    weights: dict[str, tuple[float, float]]


def world(n: int = 60, seed: int = 0) -> EventWorld:
    recs = records(n, seed)
    return EventWorld(
        CatalogueView.from_records(recs),
        [r.sku for r in recs],
        {r.sku: (float(r.weight_g or 0), float(r.weight_tol_g or 0)) for r in recs},
    )


def _vision(
    rng: np.random.Generator, top: str, runner_up: list[str], p_top: float, unknown: float
) -> VisionEvidence:
    p_top = min(p_top, 1.0 - unknown)
    rest = max(0.0, 1.0 - p_top - unknown)
    shares = rng.dirichlet(np.ones(len(runner_up))) * rest
    posterior = {top: p_top}
    for s, p in zip(runner_up, shares, strict=True):
        posterior[s] = float(p)
    return VisionEvidence(posterior, unknown)


def _foreign_weight(rng: np.random.Generator, w: EventWorld) -> float:
    """An unknown item's weight: half the time like some catalogue pack, else anything."""
    if rng.random() < 0.5:
        nominal, tol = w.weights[str(rng.choice(w.skus))]
        return nominal + float(rng.uniform(-tol, tol))
    return float(rng.uniform(40, 1500))


def events(
    w: EventWorld, count: int, seed: int, unknown_share: float = 0.3, camera_error: float = 0.2
) -> list[CalibrationEvent]:
    """Known and unknown add events; no scans (the camera × scale path)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        if rng.random() < unknown_share:
            top = str(rng.choice(w.skus))
            others = [str(s) for s in rng.choice([s for s in w.skus if s != top], 4, False)]
            vision = _vision(rng, top, others, rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.6))
            weight = WeightEvidence(_foreign_weight(rng, w))
            out.append(CalibrationEvent(vision, weight, None, None))
            continue
        truth = str(rng.choice(w.skus))
        others = [str(s) for s in rng.choice([s for s in w.skus if s != truth], 4, False)]
        if rng.random() < camera_error:
            top, runner = others[0], [truth, *others[1:]]
        else:
            top, runner = truth, others
        vision = _vision(rng, top, runner, rng.uniform(0.3, 0.97), rng.uniform(0.0, 0.15))
        nominal, tol = w.weights[truth]
        delta = nominal + float(np.clip(rng.normal(0, tol / 2.5), -tol, tol))
        out.append(CalibrationEvent(vision, WeightEvidence(delta), None, truth))
    return out
