"""What a model is worth on a fixed test set: the numbers the validation gate compares.

A model is judged the way carts would use it: a catalogue is built from the reference
embeddings with the product's own projection and calibration, and the test queries are
answered by the product's recogniser. So a refresh that helps top-1 but wrecks the
calibration, the open-set score or one SKU shows up here, not on the shop floor.
Everything works on embeddings; embedding the images with each model is the caller's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cartos.catalog.records import SkuRecord
from cartos.inference.calibrate import fit_calibration
from cartos.inference.calibration import CalibrationTargets, expected_calibration_error
from cartos.inference.index import CatalogueSnapshot, RecognitionIndex
from cartos.inference.projection import fit_projection
from cartos.inference.recognizer import Recognizer
from cartos.refresh.errors import RefreshError


@dataclass(frozen=True)
class LabelledVectors:
    """Embeddings with the SKU each shows (None: an item outside the catalogue)."""

    vectors: np.ndarray
    skus: Sequence[str | None]

    def __post_init__(self) -> None:
        if len(self.vectors) != len(self.skus):
            raise RefreshError(f"{len(self.vectors)} vectors but {len(self.skus)} labels")


@dataclass(frozen=True)
class ModelScore:
    """One model on one test set."""

    top1: float
    """Share of known-item queries whose best SKU is right."""
    accept_rate: float
    """Share of known-item queries answered ``accept`` (automated)."""
    accept_precision: float | None
    """Share of ``accept`` answers (known and unknown queries) that are right."""
    unknown_auroc: float | None
    """How well ``unknown_score`` ranks unknown queries above known ones (0.5: chance)."""
    ece: float
    """Expected calibration error of ``confidence`` on all queries."""
    per_class: dict[str, float] = field(default_factory=dict)
    """Top-1 per SKU on its known-item queries."""
    queries: int = 0


def auroc(positive: np.ndarray, negative: np.ndarray) -> float | None:
    """Probability that a random positive scores above a random negative (ties count half)."""
    if len(positive) == 0 or len(negative) == 0:
        return None
    scores = np.concatenate([positive, negative])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos_ranks = ranks[: len(positive)].sum()
    n_pos, n_neg = len(positive), len(negative)
    return float((pos_ranks - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def build_recognizer(
    records: Sequence[SkuRecord],
    references: LabelledVectors,
    calibration: LabelledVectors,
    targets: CalibrationTargets | None = None,
) -> Recognizer:
    """The recogniser ``catalog import`` + ``calibrate`` would build from these embeddings."""
    labels = np.asarray([str(s) for s in references.skus])
    snap = CatalogueSnapshot(list(records), references.vectors, list(labels),
                             fit_projection(references.vectors, labels))
    by_sku = {r.sku: r for r in records}
    truth = [s if s is not None else "" for s in calibration.skus]
    cal, _rows = fit_calibration(
        snap,
        calibration.vectors,
        truth,
        [by_sku[s].family if s in by_sku else None for s in truth],
        [by_sku[s].brand if s in by_sku else None for s in truth],
        targets,
    )
    return Recognizer(RecognitionIndex.from_snapshot(snap), cal)


def score(recognizer: Recognizer, test: LabelledVectors) -> ModelScore:
    """The recogniser's answers on ``test`` reduced to the gate's numbers."""
    if not len(test.vectors):
        raise RefreshError("the test set is empty")
    answers = recognizer.recognize_vectors(test.vectors)
    known = np.array([s is not None and s in recognizer.index.records for s in test.skus])
    right = np.array([a.sku == s for a, s in zip(answers, test.skus, strict=True)]) & known
    accepted = np.array([a.decision == "accept" for a in answers])
    unknown_score = np.array([a.unknown_score for a in answers])
    confidence = np.array([a.confidence for a in answers])
    per_class: dict[str, list[bool]] = {}
    for sku, ok, is_known in zip(test.skus, right, known, strict=True):
        if is_known and sku is not None:
            per_class.setdefault(sku, []).append(bool(ok))
    return ModelScore(
        top1=float(right[known].mean()) if known.any() else 0.0,
        accept_rate=float(accepted[known].mean()) if known.any() else 0.0,
        accept_precision=float(right[accepted].mean()) if accepted.any() else None,
        unknown_auroc=auroc(unknown_score[~known], unknown_score[known]),
        ece=expected_calibration_error(confidence, right.astype(float)),
        per_class={s: float(np.mean(v)) for s, v in sorted(per_class.items())},
        queries=len(test.vectors),
    )
