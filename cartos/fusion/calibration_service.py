"""Fit the fusion policy from a labelled calibration manifest, and store it with the catalogue.

Calibration events are played from the calibration manifest the recognition
calibration uses (``cartos calibrate``):

* every calibration image of a catalogue SKU is a known-item add event;
* unknown items are simulated the way recognition's calibration does it:
  SKUs are held out in folds (each once), a gallery is rebuilt without them,
  and their calibration images become events of items outside the catalogue;
* the measured weight is the row's nominal weight plus a clipped-normal
  packaging deviation (sigma = tolerance / 2.5, clipped at the tolerance);
* calibration events carry no scan: the fit covers the camera × scale path.

The fitted :class:`~cartos.fusion.policy.FusionPolicy` is stored as the
catalogue artefact ``fusion_policy``, versioned with the catalogue, which is
where the cart runtime loads it from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cartos.catalog.manifest import ManifestRow, read_manifest
from cartos.catalog.store import CatalogStore
from cartos.fusion.catalogue_view import CatalogueView
from cartos.fusion.evidence import BarcodeEvidence, VisionEvidence, WeightEvidence
from cartos.fusion.policy import (
    DEFAULT_UNKNOWN_SHARE,
    CalibrationEvent,
    FusionPolicy,
    FusionTargets,
    fit_fusion_calibration,
)
from cartos.inference.calibrate import fold_index
from cartos.inference.embedder import Embedder
from cartos.inference.index import CatalogueSnapshot
from cartos.inference.recognizer import Recognition, Recognizer
from cartos.sensors.barcode import InvalidBarcodeError, parse_barcode

FUSION_POLICY_ARTIFACT = "fusion_policy"
SCALE_SIGMA_G = 1.0
TOLERANCE_SIGMAS = 2.5
HOLDOUT_FRACTION = 0.08


def measured_weight(
    weight_g: float | None, tol_g: float | None, rng: np.random.Generator
) -> WeightEvidence | None:
    """Nominal weight + a clipped-normal packaging deviation within the tolerance."""
    if weight_g is None or weight_g <= 0:
        return None
    tol = tol_g if tol_g is not None and tol_g > 0 else max(5.0, 0.03 * weight_g)
    deviation = float(np.clip(rng.normal(0.0, tol / TOLERANCE_SIGMAS), -tol, tol))
    return WeightEvidence(weight_g + deviation, SCALE_SIGMA_G)


def scan(barcode: str | None) -> BarcodeEvidence | None:
    """What the scanner would send for a stored code (8 digits: EAN-8, else a UPC-E)."""
    if not barcode:
        return None
    texts = [barcode] if len(barcode) != 8 else [barcode, "]E0" + barcode]
    for text in texts:
        try:
            return BarcodeEvidence(parse_barcode(text))
        except InvalidBarcodeError:
            continue
    return None


@dataclass
class EmbeddedRows:
    rows: list[ManifestRow]
    vectors: np.ndarray


def embed_manifest(embedder: Embedder, path: Path) -> EmbeddedRows:
    manifest = read_manifest(path)
    result = embedder.embed_paths([r.image for r in manifest.rows])
    rows = [manifest.rows[i] for i in result.ok_index]
    return EmbeddedRows(rows, result.vectors)


def calibration_events(
    store: CatalogStore,
    recognizer: Recognizer,
    data: EmbeddedRows,
    rng: np.random.Generator,
) -> list[CalibrationEvent]:
    """Known events against the full gallery, simulated unknowns from held-out folds."""
    catalogue = set(recognizer.index.skus)
    events: list[CalibrationEvent] = []
    temperature = recognizer.temperature

    def add(recs: list[Recognition], rows: list[ManifestRow], truth_known: bool) -> None:
        for rec, row in zip(recs, rows, strict=True):
            events.append(
                CalibrationEvent(
                    vision=VisionEvidence.from_recognition(rec, temperature),
                    weight=measured_weight(row.sku.weight_g, row.sku.weight_tol_g, rng),
                    barcode=None,
                    truth=row.sku.sku if truth_known else None,
                )
            )

    known_idx = [i for i, r in enumerate(data.rows) if r.sku.sku in catalogue]
    outside_idx = [i for i, r in enumerate(data.rows) if r.sku.sku not in catalogue]
    if known_idx:
        add(
            recognizer.recognize_vectors(data.vectors[known_idx]),
            [data.rows[i] for i in known_idx],
            True,
        )
    if outside_idx:
        add(
            recognizer.recognize_vectors(data.vectors[outside_idx]),
            [data.rows[i] for i in outside_idx],
            False,
        )
    snap = CatalogueSnapshot.from_store(store)
    skus = sorted({data.rows[i].sku.sku for i in known_idx})
    order = [str(s) for s in rng.permutation(skus)]
    per_fold = max(1, round(HOLDOUT_FRACTION * len(recognizer.index.skus)))
    for start in range(0, len(order), per_fold):
        held = set(order[start : start + per_fold])
        if len(held) >= len(recognizer.index.skus) - 1:
            break
        fold = Recognizer(fold_index(snap, held), recognizer.calibration, top_k=recognizer.top_k)
        idx = [i for i in known_idx if data.rows[i].sku.sku in held]
        add(fold.recognize_vectors(data.vectors[idx]), [data.rows[i] for i in idx], False)
    return events


def fit_policy_from_manifest(
    store: CatalogStore,
    embedder: Embedder,
    calibration: Path,
    seed: int = 0,
    unknown_share: float | None = DEFAULT_UNKNOWN_SHARE,
    data: EmbeddedRows | None = None,
) -> FusionPolicy:
    """Fit the fusion policy on events from ``calibration`` and store it in the catalogue.

    Needs a calibrated recognition (run after ``calibrate_from_manifest``).
    """
    rng = np.random.default_rng(seed)
    recognizer = Recognizer.from_store(store)
    view = CatalogueView.from_store(store)
    events = calibration_events(store, recognizer, data or embed_manifest(embedder, calibration),
                                rng)
    targets = FusionTargets(unknown_share=unknown_share)
    policy = fit_fusion_calibration(events, view, targets=targets)
    with store.change("calibrate", f"fusion policy from {len(events)} events"):
        store.put_artifact(FUSION_POLICY_ARTIFACT, policy.to_json().encode())
    return policy


def load_policy(store: CatalogStore) -> FusionPolicy:
    """The catalogue's fusion policy; an uncalibrated default when none was fitted."""
    raw = store.get_artifact(FUSION_POLICY_ARTIFACT)
    return FusionPolicy.from_json(raw.decode()) if raw else FusionPolicy()
