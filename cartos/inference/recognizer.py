"""Embeddings → calibrated, open-set, hierarchical decisions.

Every answer is one of four tiers, so that nothing downstream ever has to
interpret a raw score:

``accept``   automate at SKU level (confidence cleared the SKU's own bar)
``confirm``  SKU proposed; act with monitoring or a one-tap confirmation
``fallback`` SKU unsure; ``level`` says whether the family or brand is known
``unknown``  probably not in the catalogue; goes to review with its crop

A catalogue without calibration still answers, but every answer is at most
``confirm`` and says ``calibrated: false``: an uncalibrated model must not
claim calibrated confidence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cartos.catalog.store import CatalogStore
from cartos.inference.calibration import (
    POSTERIOR_TOP_K,
    Calibration,
    score_features,
    softmax,
)
from cartos.inference.catalogue_model import check_signature
from cartos.inference.embedder import Embedder
from cartos.inference.index import PROJECTION_ARTIFACT, RecognitionIndex

log = logging.getLogger(__name__)

CALIBRATION_ARTIFACT = "calibration"
DECISIONS = ("accept", "confirm", "fallback", "unknown")
LEVELS = ("sku", "family", "brand", "none")
UNCALIBRATED_TEMPERATURE = 0.05


@dataclass
class Candidate:
    sku: str
    score: float


@dataclass
class Recognition:
    """One answer, in the shape ``cartos recognize --json`` prints."""

    decision: str
    sku: str | None
    confidence: float
    level: str
    family: str | None
    brand: str | None
    unknown_score: float
    topk: list[Candidate] = field(default_factory=list)
    latency_ms: float = 0.0
    calibrated: bool = True
    catalog_version: int = 0

    def to_dict(self, image: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {} if image is None else {"image": image}
        out.update(
            decision=self.decision,
            sku=self.sku,
            confidence=round(self.confidence, 4),
            level=self.level,
            family=self.family,
            brand=self.brand,
            unknown_score=round(self.unknown_score, 4),
            topk=[{"sku": c.sku, "score": round(c.score, 4)} for c in self.topk],
            latency_ms=round(self.latency_ms, 2),
            calibrated=self.calibrated,
            catalog_version=self.catalog_version,
        )
        return out


def load_calibration(store: CatalogStore) -> Calibration | None:
    """The stored calibration, or None if there is none or it is stale.

    A calibration describes one score scale; a projection refit after it
    (``catalog rebuild``) changes that scale, so it no longer applies.
    """
    blob = store.get_artifact(CALIBRATION_ARTIFACT)
    if blob is None:
        return None
    calibration = Calibration.from_json(blob.decode("utf-8"))
    projected_at = store.artifact_version(PROJECTION_ARTIFACT) or 0
    if projected_at > calibration.catalog_version:
        log.warning(
            "calibration of catalogue v%s predates the projection refit at v%s; "
            "run `cartos calibrate` again",
            calibration.catalog_version,
            projected_at,
        )
        return None
    return calibration


class Recognizer:
    """Scores against a :class:`RecognitionIndex` and applies a :class:`Calibration`."""

    def __init__(
        self,
        index: RecognitionIndex,
        calibration: Calibration | None,
        embedder: Embedder | None = None,
        top_k: int = 5,
    ) -> None:
        self.index = index
        self.calibration = calibration
        self.embedder = embedder
        self.top_k = top_k

    @classmethod
    def from_store(
        cls, store: CatalogStore, embedder: Embedder | None = None, top_k: int = 5
    ) -> Recognizer:
        if embedder is not None:
            # Queries embedded by another model than the catalogue's would still score,
            # just meaninglessly: refuse instead (cartos.inference.catalogue_model).
            check_signature(store, embedder)
        index = RecognitionIndex.from_store(store)
        return cls(index, load_calibration(store), embedder, top_k)

    @property
    def temperature(self) -> float:
        return self.calibration.temperature if self.calibration else UNCALIBRATED_TEMPERATURE

    def recognize_vectors(self, vectors: np.ndarray) -> list[Recognition]:
        """Decide for each raw embedding row."""
        # Everything below reads only each query's best few SKUs: the features use the top
        # two, the family/brand posterior the top ten, the answer the top k.
        best = self.index.best(vectors, max(POSTERIOR_TOP_K, self.top_k))
        feats = score_features(best.scores)
        posterior_cols = best.columns[:, :POSTERIOR_TOP_K]
        probs = softmax(best.scores[:, :POSTERIOR_TOP_K], self.temperature)
        families, fam_p = self.index.group_posterior(posterior_cols, probs, "family")
        brands, brand_p = self.index.group_posterior(posterior_cols, probs, "brand")
        cal = self.calibration
        if cal is not None:
            conf = cal.confidence(feats)
            unk = cal.unknown(feats)
        else:
            conf = probs.max(axis=1)
            unk = 1.0 - conf
        k = min(self.top_k, best.columns.shape[1])
        out: list[Recognition] = []
        for i in range(len(best.columns)):
            top = [
                Candidate(self.index.skus[c], float(v))
                for c, v in zip(best.columns[i, :k].tolist(), best.scores[i, :k].tolist(),
                                strict=True)
            ]
            sku = top[0].sku
            rec = self.index.records[sku]
            family = families[i] if cal is None or fam_p[i] >= cal.family_threshold else None
            brand = brands[i] if cal is None or brand_p[i] >= cal.brand_threshold else None
            decision, level = self._decide(sku, float(conf[i]), float(unk[i]), family, brand)
            if level == "sku":
                family, brand = rec.family, rec.brand
            out.append(
                Recognition(
                    decision=decision,
                    sku=sku,
                    confidence=float(conf[i]),
                    level=level,
                    family=family,
                    brand=brand,
                    unknown_score=float(unk[i]),
                    topk=top,
                    calibrated=cal is not None,
                    catalog_version=self.index.version,
                )
            )
        return out

    def _decide(
        self, sku: str, conf: float, unk: float, family: str | None, brand: str | None
    ) -> tuple[str, str]:
        cal = self.calibration
        group_level = "family" if family else ("brand" if brand else "none")
        if cal is None:
            return ("confirm", "sku") if conf >= 0.5 else ("fallback", group_level)
        is_unknown = unk >= cal.unknown_threshold
        if conf >= cal.accept_threshold_for(sku) and not is_unknown:
            return "accept", "sku"
        if is_unknown:
            return "unknown", group_level
        if conf >= cal.confirm_threshold:
            return "confirm", "sku"
        if group_level != "none":
            return "fallback", group_level
        return "unknown", "none"

    def recognize_images(self, images: Sequence[np.ndarray]) -> list[Recognition]:
        """Embed decoded BGR crops and decide; latency covers embedding + decision."""
        if self.embedder is None:
            raise ValueError("recognize_images needs an embedder")
        out: list[Recognition] = []
        for image in images:
            start = time.perf_counter()
            vec = self.embedder.embed_arrays([image])
            rec = self.recognize_vectors(vec)[0]
            rec.latency_ms = (time.perf_counter() - start) * 1000
            out.append(rec)
        return out
