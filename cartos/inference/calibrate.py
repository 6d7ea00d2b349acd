"""Fitting a :class:`Calibration` from labelled non-reference images.

Open-set behaviour cannot be calibrated on known items alone, so SKUs are held
out in folds: for each fold a gallery (and, when the catalogue uses one, a
projection) is rebuilt *without* the held-out SKUs, and their images play the
unknown items a cart will meet. Known items are scored against the same
fold galleries, so both sides see the same score scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from cartos.catalog.records import SkuRecord
from cartos.catalog.store import CatalogStore
from cartos.inference.calibration import (
    Calibration,
    CalibrationTargets,
    LogisticModel,
    expected_calibration_error,
    fit_temperature,
    local_posterior,
    reliability_bins,
    score_features,
    threshold_for_precision,
)
from cartos.inference.errors import InferenceError
from cartos.inference.index import RecognitionIndex
from cartos.inference.projection import Projection, fit_projection


@dataclass
class CatalogueSnapshot:
    """What calibration needs from the catalogue: records, exemplars, projection recipe."""

    records: list[SkuRecord]
    exemplar_vectors: np.ndarray
    exemplar_skus: list[str]
    projection: Projection
    nn_weight: float
    version: int


@dataclass
class CalibrationRows:
    """Scored calibration samples (known and simulated-unknown) pooled over folds."""

    features: np.ndarray
    correct: np.ndarray  # top-1 right (always False for unknown rows)
    unknown: np.ndarray  # row is an item outside its gallery
    predicted: list[str]
    raw_top_prob: np.ndarray
    family_prob: np.ndarray
    family_correct: np.ndarray
    brand_prob: np.ndarray
    brand_correct: np.ndarray


def group_posterior(
    index: RecognitionIndex, probs: np.ndarray, attr: str
) -> tuple[list[str | None], np.ndarray]:
    """Most probable family (or brand) per row and its summed SKU posterior."""
    groups = index.families if attr == "family" else index.brands
    if not groups:
        return [None] * len(probs), np.zeros(len(probs))
    keys = sorted(groups)
    mass = np.stack([probs[:, groups[k]].sum(axis=1) for k in keys], axis=1)
    best = mass.argmax(axis=1)
    return [keys[i] for i in best], mass[np.arange(len(probs)), best]


def _fold_index(snap: CatalogueSnapshot, held_out: set[str]) -> RecognitionIndex:
    keep_rec = [r for r in snap.records if r.sku not in held_out]
    mask = np.array([s not in held_out for s in snap.exemplar_skus], dtype=bool)
    vectors = snap.exemplar_vectors[mask]
    skus = [s for s, m in zip(snap.exemplar_skus, mask, strict=True) if m]
    projection = snap.projection
    if projection.fitted_classes:
        projection = fit_projection(
            vectors, np.asarray(skus), shrinkage=projection.shrinkage, pca_dim=projection.pca_dim
        )
    return RecognitionIndex(keep_rec, vectors, skus, projection, snap.nn_weight, snap.version)


def _score_rows(
    index: RecognitionIndex,
    vectors: np.ndarray,
    truth: Sequence[str],
    truth_family: Sequence[str | None],
    truth_brand: Sequence[str | None],
    temperature: float,
) -> dict[str, np.ndarray | list[str]]:
    scores = index.score(vectors)
    pred_col = scores.argmax(axis=1)
    predicted = [index.skus[c] for c in pred_col]
    probs = local_posterior(scores, temperature)
    fam, fam_p = group_posterior(index, probs, "family")
    brand, brand_p = group_posterior(index, probs, "brand")
    return {
        "features": score_features(scores),
        "correct": np.array([p == t for p, t in zip(predicted, truth, strict=True)]),
        "unknown": np.array([t not in index.records for t in truth]),
        "predicted": predicted,
        "raw_top_prob": probs.max(axis=1),
        "family_prob": fam_p,
        "family_correct": np.array(
            [f is not None and f == t for f, t in zip(fam, truth_family, strict=True)]
        ),
        "brand_prob": brand_p,
        "brand_correct": np.array(
            [b is not None and b == t for b, t in zip(brand, truth_brand, strict=True)]
        ),
    }


def fit_calibration(
    snap: CatalogueSnapshot,
    vectors: np.ndarray,
    truth: Sequence[str],
    truth_family: Sequence[str | None],
    truth_brand: Sequence[str | None],
    targets: CalibrationTargets | None = None,
) -> tuple[Calibration, CalibrationRows]:
    """Fit temperature, confidence and unknown models and all thresholds."""
    targets = targets or CalibrationTargets()
    truth = list(truth)
    catalogue = {r.sku for r in snap.records}
    known_skus = sorted({t for t in truth if t in catalogue})
    if len(known_skus) < 3:
        raise InferenceError("calibration needs labelled images of at least 3 catalogue SKUs")
    full = RecognitionIndex(
        snap.records,
        snap.exemplar_vectors,
        snap.exemplar_skus,
        snap.projection,
        snap.nn_weight,
        snap.version,
    )
    known_rows = np.array([t in catalogue for t in truth])
    col = {s: i for i, s in enumerate(full.skus)}
    kv = vectors[known_rows]
    temperature = fit_temperature(
        full.score(kv), np.array([col[t] for t, k in zip(truth, known_rows, strict=True) if k])
    )

    rng = np.random.default_rng(targets.seed)
    order = list(rng.permutation(known_skus))
    per_fold = max(1, round(targets.holdout_fraction * len(full.skus)))
    # By default every calibration SKU is held out exactly once, so the unknown
    # side is not at the mercy of which few SKUs one draw happened to pick.
    folds = targets.folds or int(np.ceil(len(order) / per_fold))
    parts: list[dict[str, np.ndarray | list[str]]] = []
    for f in range(max(1, folds)):
        held = set(order[(f * per_fold) % len(order) :][:per_fold])
        if len(held) >= len(full.skus):
            break
        index = _fold_index(snap, held)
        parts.append(_score_rows(index, vectors, truth, truth_family, truth_brand, temperature))
    rows = CalibrationRows(
        features=np.concatenate([p["features"] for p in parts]),  # type: ignore[misc]
        correct=np.concatenate([p["correct"] for p in parts]),  # type: ignore[misc]
        unknown=np.concatenate([p["unknown"] for p in parts]),  # type: ignore[misc]
        predicted=[s for p in parts for s in p["predicted"]],
        raw_top_prob=np.concatenate([p["raw_top_prob"] for p in parts]),  # type: ignore[misc]
        family_prob=np.concatenate([p["family_prob"] for p in parts]),  # type: ignore[misc]
        family_correct=np.concatenate([p["family_correct"] for p in parts]),  # type: ignore[misc]
        brand_prob=np.concatenate([p["brand_prob"] for p in parts]),  # type: ignore[misc]
        brand_correct=np.concatenate([p["brand_correct"] for p in parts]),  # type: ignore[misc]
    )
    if not rows.unknown.any():
        raise InferenceError("calibration produced no simulated unknowns; add more SKUs")

    # confidence = P(right | known, features) * P(known | features): the two
    # factors are fitted separately, so the known-item part does not depend on
    # how many simulated unknowns the folds happened to produce.
    known_model = LogisticModel.fit(
        rows.features[~rows.unknown], rows.correct[~rows.unknown].astype(float)
    )
    unk_model = LogisticModel.fit(rows.features, rows.unknown.astype(float))
    unk = unk_model.predict(rows.features)
    conf = known_model.predict(rows.features) * (1.0 - unk)

    accept = threshold_for_precision(conf, rows.correct, targets.accept_precision)
    confirm = min(accept, threshold_for_precision(conf, rows.correct, targets.confirm_precision))
    known_unk_scores = unk[~rows.unknown]
    unknown_thr = float(np.quantile(known_unk_scores, 1.0 - targets.false_unknown_rate))

    # Per-SKU accept thresholds: a SKU that drew confident mistakes must clear
    # a higher bar than the global one; everyone else keeps the global bar.
    per_class: dict[str, float] = {}
    wrong = ~rows.correct & (conf >= accept)
    for i in np.where(wrong)[0]:
        sku = rows.predicted[i]
        per_class[sku] = max(per_class.get(sku, accept), min(1.0, float(conf[i]) + 1e-4))

    fam_thr = threshold_for_precision(
        rows.family_prob, rows.family_correct, targets.group_precision
    )
    brand_thr = threshold_for_precision(
        rows.brand_prob, rows.brand_correct, targets.group_precision
    )

    correct_f = rows.correct.astype(float)
    is_unk = rows.unknown
    flagged = unk >= unknown_thr
    metrics = {
        "rows": len(conf),
        "known_rows": int((~is_unk).sum()),
        "simulated_unknown_rows": int(is_unk.sum()),
        "held_out_skus_per_fold": per_fold,
        "folds": len(parts),
        "top1_known": float(rows.correct[~is_unk].mean()),
        "ece_before": expected_calibration_error(rows.raw_top_prob, correct_f),
        "ece_after": expected_calibration_error(conf, correct_f),
        "unknown_fpr_known_flagged": float(flagged[~is_unk].mean()),
        "unknown_fnr_unknown_missed": float((~flagged[is_unk]).mean()),
        "accept_rate_known": float((conf[~is_unk] >= accept).mean()),
        "accept_precision": float(rows.correct[conf >= accept].mean())
        if (conf >= accept).any()
        else float("nan"),
        "unknown_accepted_rate": float((conf[is_unk] >= accept).mean()),
        "reliability_before": reliability_bins(rows.raw_top_prob, correct_f),
        "reliability_after": reliability_bins(conf, correct_f),
    }
    cal = Calibration(
        catalog_version=snap.version,
        temperature=temperature,
        confidence_model=known_model,
        unknown_model=unk_model,
        accept_threshold=accept,
        confirm_threshold=confirm,
        unknown_threshold=unknown_thr,
        family_threshold=fam_thr,
        brand_threshold=brand_thr,
        class_accept_thresholds=per_class,
        targets=asdict(targets),
        metrics=metrics,
    )
    return cal, rows


def snapshot(store: CatalogStore) -> CatalogueSnapshot:
    """Freeze the current catalogue version for calibration."""
    index = RecognitionIndex.from_store(store)
    ex = store.exemplars(skus=index.skus)
    return CatalogueSnapshot(
        records=[index.records[s] for s in index.skus],
        exemplar_vectors=ex.vectors,
        exemplar_skus=list(ex.skus),
        projection=index.projection,
        nn_weight=index.nn_weight,
        version=store.version,
    )
