"""Fitting a :class:`Calibration` from labelled non-reference images.

Open-set behaviour cannot be calibrated on known items alone, so SKUs are held
out in folds: for each fold a gallery (and, when the catalogue uses one, a
projection) is rebuilt *without* the held-out SKUs, and their images play the
unknown items a cart will meet. Known items are scored against the same
fold galleries, so both sides see the same score scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from cartos.inference.calibration import (
    POSTERIOR_TOP_K,
    Calibration,
    CalibrationTargets,
    LogisticModel,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    score_features,
    softmax,
    threshold_for_precision,
)
from cartos.inference.errors import InferenceError
from cartos.inference.index import CatalogueSnapshot, RecognitionIndex, top_of
from cartos.inference.projection import fit_projection


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

    @classmethod
    def concat(cls, parts: Sequence[CalibrationRows]) -> CalibrationRows:
        """Pool the rows of several folds."""
        pooled: dict[str, Any] = {}
        for f in fields(cls):
            values = [getattr(p, f.name) for p in parts]
            pooled[f.name] = (
                [v for part in values for v in part]
                if isinstance(values[0], list)
                else np.concatenate(values)
            )
        return cls(**pooled)


def fold_index(snap: CatalogueSnapshot, held_out: set[str]) -> RecognitionIndex:
    keep_rec = [r for r in snap.records if r.sku not in held_out]
    mask = np.array([s not in held_out for s in snap.exemplar_skus], dtype=bool)
    vectors = snap.exemplar_vectors[mask]
    skus = [s for s, m in zip(snap.exemplar_skus, mask, strict=True) if m]
    projection = snap.projection
    if projection.fitted_classes:
        projection = fit_projection(
            vectors, np.asarray(skus), shrinkage=projection.shrinkage, pca_dim=projection.pca_dim
        )
    return RecognitionIndex.from_snapshot(
        replace(
            snap,
            records=keep_rec,
            exemplar_vectors=vectors,
            exemplar_skus=skus,
            projection=projection,
        )
    )


def _score_rows(
    index: RecognitionIndex,
    vectors: np.ndarray,
    truth: Sequence[str],
    truth_family: Sequence[str | None],
    truth_brand: Sequence[str | None],
    temperature: float,
) -> CalibrationRows:
    # Calibration scores every SKU (no shortlist): it is the reference the shortlist is
    # measured against, and it runs offline.
    top = top_of(index.score(vectors), POSTERIOR_TOP_K)
    predicted = [index.skus[c] for c in top.columns[:, 0]]
    probs = softmax(top.scores, temperature)
    fam, fam_p = index.group_posterior(top.columns, probs, "family")
    brand, brand_p = index.group_posterior(top.columns, probs, "brand")
    return CalibrationRows(
        features=score_features(top.scores),
        correct=np.array([p == t for p, t in zip(predicted, truth, strict=True)]),
        unknown=np.array([t not in index.records for t in truth]),
        predicted=predicted,
        raw_top_prob=probs.max(axis=1),
        family_prob=fam_p,
        family_correct=np.array(
            [f is not None and f == t for f, t in zip(fam, truth_family, strict=True)]
        ),
        brand_prob=brand_p,
        brand_correct=np.array(
            [b is not None and b == t for b, t in zip(brand, truth_brand, strict=True)]
        ),
    )


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
    full = RecognitionIndex.from_snapshot(snap)
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
    parts: list[CalibrationRows] = []
    for f in range(max(1, folds)):
        held = set(order[(f * per_fold) % len(order) :][:per_fold])
        if len(held) >= len(full.skus):
            break
        index = fold_index(snap, held)
        parts.append(_score_rows(index, vectors, truth, truth_family, truth_brand, temperature))
    rows = CalibrationRows.concat(parts)
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
