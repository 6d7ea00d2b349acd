"""The in-memory recognition index built from one catalogue version.

Scores a query embedding against every active SKU. A SKU's score blends its
prototype (the mean of its exemplars, robust to one bad reference) with its
nearest exemplar (which keeps multi-facing or multi-pose SKUs recognisable
when their mean sits between modes). Family and brand memberships ride along
for the hierarchy fallback.

A decision needs only each query's few best SKUs (:meth:`RecognitionIndex.best`),
so a large catalogue is not scored in full: reading every exemplar of 10,000 SKUs
is a 150 MB pass through memory per crop. Above :data:`EXHAUSTIVE_UP_TO` SKUs the
index first ranks prototypes in a small subspace (:class:`Shortlist`) and then
scores exactly, prototypes and exemplars, only the SKUs it shortlisted.
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
EXHAUSTIVE_UP_TO = 1000
"""Catalogues up to this many SKUs are scored in full for every query."""
SHORTLIST_DIMS = (256, 640)
"""Subspace dimensions of the shortlist's two rounds (see :class:`Shortlist`)."""
SHORTLIST_WIDTHS = (1500, 200)
"""SKUs kept after each round; the last width is how many SKUs are scored exactly."""


@dataclass(frozen=True)
class Shortlist:
    """Prototypes in their own principal subspace: a cheap ranking in two rounds.

    The basis spans the directions in which the catalogue's prototypes differ most
    (eigenvectors of their uncentred second moment), so dot products there approximate
    full ones. Round one ranks every SKU on the first ``dims[0]`` directions, a pass
    over a matrix small enough to stay in cache; round two adds the next directions for
    the ``widths[0]`` survivors only. On the synthetic 10,000-SKU catalogue a one-round
    ranking in 128 dimensions misses the best SKU for 2.3 % of queries, one in 512
    reads 20 MB per crop and still misses 0.05 %; these two rounds missed none of 3,200
    (``cartos bench growth`` measures it at every size). The basis depends on the
    prototypes alone, so the same catalogue always gives the same shortlist.
    """

    basis: np.ndarray  # (d, dims[1])
    first: np.ndarray  # (C, dims[0]): prototypes on the first directions
    rest: np.ndarray  # (C, dims[1] - dims[0]): on the remaining ones
    widths: tuple[int, int]

    @classmethod
    def fit(
        cls,
        prototypes: np.ndarray,
        dims: tuple[int, int] = SHORTLIST_DIMS,
        widths: tuple[int, int] = SHORTLIST_WIDTHS,
    ) -> Shortlist:
        p = prototypes.astype(np.float64)
        _, vectors = np.linalg.eigh(p.T @ p)
        top = min(dims[1], p.shape[1])
        basis = np.ascontiguousarray(vectors[:, ::-1][:, :top], dtype=np.float32)
        coarse = prototypes @ basis
        split = min(dims[0], top)
        count = len(prototypes)
        return cls(
            basis,
            np.ascontiguousarray(coarse[:, :split], dtype=np.float32),
            np.ascontiguousarray(coarse[:, split:], dtype=np.float32),
            (min(widths[0], count), min(widths[1], widths[0], count)),
        )

    @property
    def size(self) -> int:
        """SKUs scored exactly per query."""
        return self.widths[1]

    def columns(self, q: np.ndarray) -> np.ndarray:
        """(n, size) candidate SKU columns per projected query, in ascending column order."""
        z = q @ self.basis
        split = self.first.shape[1]
        first = z[:, :split] @ self.first.T
        wide = np.argpartition(-first, self.widths[0] - 1, axis=1)[:, : self.widths[0]]
        out = np.empty((len(q), self.widths[1]), dtype=np.int64)
        for i, cand in enumerate(wide):
            refined = np.take(first[i], cand) + self.rest[cand] @ z[i, split:]
            keep = np.argpartition(-refined, self.widths[1] - 1)[: self.widths[1]]
            out[i] = np.sort(cand[keep])
        return out

    @property
    def nbytes(self) -> int:
        return int(self.basis.nbytes + self.first.nbytes + self.rest.nbytes)


@dataclass(frozen=True)
class TopScores:
    """Each query's best SKU columns, best first, with their exact scores."""

    columns: np.ndarray  # (n, k) int
    scores: np.ndarray  # (n, k) float32


def top_of(scores: np.ndarray, k: int) -> TopScores:
    """The ``k`` best columns of each row of a full score matrix, best first."""
    k = min(k, scores.shape[1])
    # argpartition then sort only the k winners: linear in the catalogue size
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    cols = np.take_along_axis(part, order, axis=1)
    return TopScores(cols, np.take_along_axis(scores, cols, axis=1))


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
        exhaustive_up_to: int = EXHAUSTIVE_UP_TO,
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
        self._counts = counts
        self.shortlist = (
            Shortlist.fit(self._prototypes)
            if len(self.skus) > exhaustive_up_to
            else None
        )
        self._family_of = [self.records[s].family or None for s in self.skus]
        self._brand_of = [self.records[s].brand or None for s in self.skus]

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

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays a query reads."""
        shortlist = self.shortlist.nbytes if self.shortlist is not None else 0
        return int(self._prototypes.nbytes + self._exemplars.nbytes + shortlist
                   + self.projection.matrix.nbytes + self.projection.mean.nbytes)

    def group_posterior(
        self, columns: np.ndarray, probs: np.ndarray, attr: str
    ) -> tuple[list[str | None], np.ndarray]:
        """Most probable family (or brand) per row and its summed SKU posterior.

        ``columns``/``probs`` are each row's best SKUs and their posterior (the posterior
        is zero elsewhere, see :func:`cartos.inference.calibration.local_posterior`). Ties
        go to the alphabetically first group; a row whose SKUs have no group gets None.
        """
        member = self._family_of if attr == "family" else self._brand_of
        names: list[str | None] = []
        mass = np.zeros(len(columns))
        for i, (row_cols, row_p) in enumerate(zip(columns, probs, strict=True)):
            totals: dict[str, float] = {}
            for c, p in zip(row_cols.tolist(), row_p.tolist(), strict=True):
                key = member[c]
                if key is not None:
                    totals[key] = totals.get(key, 0.0) + p
            if totals:
                best = min(totals, key=lambda k: (-totals[k], k))
                names.append(best)
                mass[i] = totals[best]
            else:
                names.append(None)
        return names, mass

    def project(self, vectors: np.ndarray) -> np.ndarray:
        return self.projection.apply(vectors)

    def score(self, vectors: np.ndarray) -> np.ndarray:
        """(n, C) SKU scores for raw query embeddings, every SKU scored."""
        q = self.project(np.atleast_2d(vectors))
        proto = q @ self._prototypes.T
        sims = q @ self._exemplars.T
        nearest = np.maximum.reduceat(sims, self._starts, axis=1)
        scores = (1 - self.nn_weight) * proto + self.nn_weight * nearest
        return np.asarray(scores, dtype=np.float32)

    def best(self, vectors: np.ndarray, k: int) -> TopScores:
        """Each raw query's ``k`` best SKUs with exact scores, through the shortlist if any.

        A SKU outside a query's shortlist is taken to score below every SKU inside it; how
        often that changes the answer is measured by ``cartos bench growth``
        (``shortlist_agreement``).
        """
        if self.shortlist is None:
            return top_of(self.score(vectors), k)
        q = self.project(np.atleast_2d(vectors))
        candidates = self.shortlist.columns(q)
        k = min(k, candidates.shape[1])
        cols = np.empty((len(q), k), dtype=np.int64)
        scores = np.empty((len(q), k), dtype=np.float32)
        for i, (row, cand) in enumerate(zip(q, candidates, strict=True)):
            counts = self._counts[cand]
            offsets = np.cumsum(counts) - counts
            rows = np.repeat(self._starts[cand] - offsets, counts) + np.arange(counts.sum())
            nearest = np.maximum.reduceat(self._exemplars[rows] @ row, offsets)
            blended = (1 - self.nn_weight) * (self._prototypes[cand] @ row) + (
                self.nn_weight * nearest
            )
            top = top_of(blended[None, :].astype(np.float32), k)
            cols[i], scores[i] = cand[top.columns[0]], top.scores[0]
        return TopScores(cols, scores)
