"""Plain value types that cross the catalogue's boundary.

They are frozen so a record read from the store cannot be edited in place and
silently diverge from what is on disk: changing a SKU means building a new
record and handing it to :meth:`CatalogStore.upsert_sku` inside a change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

ACTIVE = "active"
DISCONTINUED = "discontinued"
SKU_STATUSES: tuple[str, ...] = (ACTIVE, DISCONTINUED)


@dataclass(frozen=True)
class SkuRecord:
    """One sellable item as the store's catalogue describes it.

    ``barcode`` is a string, never a number: GTINs carry meaningful leading
    zeros. Weights are grams; ``weight_tol_g`` is the tolerance the cart's
    scale check allows around ``weight_g``. ``successor`` names the SKU that
    replaced a discontinued one, so old exemplars can be re-pointed.
    """

    sku: str
    name: str = ""
    barcode: str | None = None
    brand: str | None = None
    family: str | None = None
    weight_g: float | None = None
    weight_tol_g: float | None = None
    status: str = ACTIVE
    successor: str | None = None


@dataclass(frozen=True, eq=False)
class ExemplarSet:
    """Reference embeddings, row-aligned: ``vectors[i]`` belongs to ``skus[i]``.

    Parallel arrays rather than a list of objects because the consumers (the
    prototype builder, the nearest-neighbour index) want one contiguous
    ``(n, d)`` float32 matrix, and building it once here is what keeps loading
    thousands of exemplars fast. Equality is identity: comparing arrays
    element-wise is the caller's call, not ``==``'s.
    """

    ids: npt.NDArray[np.int64]
    skus: list[str]
    vectors: npt.NDArray[np.float32]
    sources: list[str]
    kinds: list[str]

    def __len__(self) -> int:
        return len(self.skus)

    @property
    def dim(self) -> int:
        """Embedding dimension (0 for an empty set from a catalogue without one)."""
        return int(self.vectors.shape[1])


@dataclass(frozen=True)
class VersionRow:
    """One committed change to the catalogue, as recorded in its history."""

    version: int
    kind: str
    summary: str
    created_at: str
