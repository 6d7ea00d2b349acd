"""The in-memory recognition index built from one catalogue version.

Scores a query embedding against every active SKU. A SKU's score blends its
prototype (the mean of its exemplars, robust to one bad reference) with its
nearest exemplar (which keeps multi-facing or multi-pose SKUs recognisable
when their mean sits between modes). Family and brand memberships ride along
for the hierarchy fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cartos.catalog.records import SkuRecord
from cartos.catalog.store import CatalogStore
from cartos.inference.errors import InferenceError
from cartos.inference.projection import Projection

PROJECTION_ARTIFACT = "projection"
DEFAULT_NN_WEIGHT = 0.5


@dataclass
class CatalogueSnapshot:
    """One catalogue version as plain arrays, what an index or a calibration fold is built from."""

    records: list[SkuRecord]
    exemplar_vectors: np.ndarray
    exemplar_skus: list[str]
    projection: Projection
    nn_weight: float = DEFAULT_NN_WEIGHT
    version: int = 0

    @classmethod
    def from_store(
        cls, store: CatalogStore, nn_weight: float = DEFAULT_NN_WEIGHT
    ) -> CatalogueSnapshot:
        """Active SKUs that have exemplars, their exemplars and the stored projection."""
        active = store.list_skus(status="active")
        exemplars = store.exemplars(skus=[r.sku for r in active])
        blob = store.get_artifact(PROJECTION_ARTIFACT)
        dim = exemplars.vectors.shape[1] if len(exemplars) else (store.embedding_dim or 0)
        projection = Projection.from_bytes(blob) if blob else Projection.identity(dim)
        with_exemplars = set(exemplars.skus)
        return cls(
            records=[r for r in active if r.sku in with_exemplars],
            exemplar_vectors=exemplars.vectors,
            exemplar_skus=list(exemplars.skus),
            projection=projection,
            nn_weight=nn_weight,
            version=store.version,
        )


class RecognitionIndex:
    """Projected SKU prototypes and exemplars, ready for dot products."""

    def __init__(
        self,
        records: Sequence[SkuRecord],
        exemplar_vectors: np.ndarray,
        exemplar_skus: Sequence[str],
        projection: Projection,
        nn_weight: float = DEFAULT_NN_WEIGHT,
        version: int = 0,
    ) -> None:
        self.version = version
        self.projection = projection
        self.nn_weight = nn_weight
        self.records = {r.sku: r for r in records}
        self.skus: list[str] = sorted(self.records)
        if not self.skus:
            raise InferenceError("the catalogue has no active SKU with exemplars")
        column = {s: i for i, s in enumerate(self.skus)}
        keep = np.array([s in column for s in exemplar_skus], dtype=bool)
        labels = np.array([column[s] for s in np.asarray(exemplar_skus)[keep]], dtype=np.int64)
        z = projection.apply(np.asarray(exemplar_vectors)[keep])
        # Exemplars sorted by SKU column: segmented sums and maxima give prototypes and
        # nearest-exemplar scores in one pass each.
        order = np.argsort(labels, kind="stable")
        labels, z = labels[order], z[order]
        self._exemplars = z
        self._starts = np.searchsorted(labels, np.arange(len(self.skus)))
        counts = np.bincount(labels, minlength=len(self.skus))
        missing = [s for s, c in zip(self.skus, counts, strict=True) if c == 0]
        if missing:
            raise InferenceError(f"SKUs without exemplars: {', '.join(missing[:5])}")
        proto = np.add.reduceat(z.astype(np.float64), self._starts, axis=0)
        proto /= np.linalg.norm(proto, axis=1, keepdims=True)
        self._prototypes = proto.astype(np.float32)
        self.families = self._groups("family")
        self.brands = self._groups("brand")

    def _groups(self, attr: str) -> dict[str, np.ndarray]:
        groups: dict[str, list[int]] = {}
        for i, sku in enumerate(self.skus):
            key = getattr(self.records[sku], attr)
            if key:
                groups.setdefault(key, []).append(i)
        return {k: np.array(v, dtype=np.int64) for k, v in groups.items()}

    @classmethod
    def from_snapshot(cls, snap: CatalogueSnapshot) -> RecognitionIndex:
        return cls(
            snap.records,
            snap.exemplar_vectors,
            snap.exemplar_skus,
            snap.projection,
            nn_weight=snap.nn_weight,
            version=snap.version,
        )

    @classmethod
    def from_store(
        cls, store: CatalogStore, nn_weight: float = DEFAULT_NN_WEIGHT
    ) -> RecognitionIndex:
        """Load the current catalogue version (active SKUs only)."""
        return cls.from_snapshot(CatalogueSnapshot.from_store(store, nn_weight))

    def group_posterior(self, probs: np.ndarray, attr: str) -> tuple[list[str | None], np.ndarray]:
        """Most probable family (or brand) per row and its summed SKU posterior."""
        groups = self.families if attr == "family" else self.brands
        if not groups:
            return [None] * len(probs), np.zeros(len(probs))
        keys = sorted(groups)
        mass = np.stack([probs[:, groups[k]].sum(axis=1) for k in keys], axis=1)
        best = mass.argmax(axis=1)
        return [keys[i] for i in best], mass[np.arange(len(probs)), best]

    def project(self, vectors: np.ndarray) -> np.ndarray:
        return self.projection.apply(vectors)

    def score(self, vectors: np.ndarray) -> np.ndarray:
        """(n, C) SKU scores for raw query embeddings."""
        q = self.project(np.atleast_2d(vectors))
        proto = q @ self._prototypes.T
        sims = q @ self._exemplars.T
        nearest = np.maximum.reduceat(sims, self._starts, axis=1)
        scores = (1 - self.nn_weight) * proto + self.nn_weight * nearest
        return np.asarray(scores, dtype=np.float32)
