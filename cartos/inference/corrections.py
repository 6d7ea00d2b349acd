"""Corrections: a shopper's or attendant's answer becomes a local exemplar at once.

When the cart asks "is this X?" and is told "it's Y", the crop it was looking
at is a labelled image of Y taken by *this* cart's camera, under *this* cart's
light: exactly the kind of reference the catalogue import lacks. Applying it
adds the crop's embedding as an exemplar of Y (source ``correction:<id>``) and
refreshes Y's prototype (and its family/brand rows) in one versioned catalogue
change, so the next recognition on this cart already uses it. Nothing else
moves: other SKUs' prototypes are not rewritten and the shared projection is
not refitted (that stays an explicit ``catalog rebuild``).

Memory policy, per SKU:

* **References are never evicted.** They come from the store's catalogue and
  are shared with every cart; evicting them here would make this cart drift
  from the hub in a way a later sync could not see.
* **Corrections compete for the rest.** They get ``memory_per_sku`` minus the
  reference count, but never fewer than ``min(4, memory_per_sku)`` slots, so
  a SKU imported with many references can still learn from this cart.
* **The newest correction is always kept**: someone just told the cart, and it
  must take effect now. The other slots go to older corrections chosen by
  herding (:func:`~cartos.inference.herding.herding_select`) with the
  references and the newest correction as anchors, so the kept mean (the
  prototype) stays close to the mean of everything this SKU has been shown.
  "Everything" includes corrections evicted long ago: the sum and count of
  every correction ever applied to a SKU are kept in the meta table, because
  herding towards the mean of only what survived would let the memory drift
  towards whatever came last.

Applying is idempotent on the correction id: the id is remembered in the
catalogue's meta table (even after herding evicts its exemplar), so a
re-delivered correction is a no-op, and the same id with another SKU is
refused. Every write happens inside :meth:`CatalogStore.change`, one SQLite
transaction: a crash or kill half way leaves the previous version intact.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cartos.catalog.errors import UnknownSkuError
from cartos.catalog.records import DISCONTINUED
from cartos.catalog.store import CatalogStore
from cartos.inference.catalogue_model import check_signature
from cartos.inference.embedder import Embedder, l2_normalise
from cartos.inference.enrolment import _refresh_prototypes
from cartos.inference.errors import (
    CorrectionConflictError,
    CorrectionError,
    DiscontinuedSkuError,
    ImageDecodeError,
)
from cartos.inference.herding import herding_select

__all__ = [
    "CORRECTION_KIND",
    "DEFAULT_MEMORY_PER_SKU",
    "MIN_CORRECTION_SLOTS",
    "CorrectionResult",
    "Crop",
    "apply_correction",
    "correction_slots",
    "herding_select",
]

CORRECTION_KIND = "correction"
"""Exemplar ``kind`` of corrections; every other kind counts as a reference."""

SOURCE_PREFIX = "correction:"
APPLIED_META_PREFIX = "applied_correction:"
SEEN_META_PREFIX = "correction_sum:"
DEFAULT_MEMORY_PER_SKU = 32
MIN_CORRECTION_SLOTS = 4
MAX_ID_LENGTH = 200

Crop = str | Path | bytes | npt.NDArray[np.generic]
"""An image file, encoded image bytes, a decoded BGR array, or a ready embedding."""


@dataclass(frozen=True)
class CorrectionResult:
    """What applying one correction did, for the caller's log and the CLI."""

    correction_id: str
    sku: str
    applied: bool
    """False when this id had already been applied: nothing was written."""
    catalog_version: int
    references: int
    corrections: int
    """Corrections of this SKU kept after the change."""
    slots: int
    """How many corrections this SKU may keep."""
    evicted: tuple[str, ...] = field(default_factory=tuple)
    """Sources of the corrections herding dropped in this change."""


def correction_slots(memory_per_sku: int, references: int) -> int:
    """Corrections a SKU may keep next to ``references`` never-evicted references."""
    if memory_per_sku < 1:
        raise CorrectionError(f"memory_per_sku must be at least 1, got {memory_per_sku}")
    return max(memory_per_sku - references, min(MIN_CORRECTION_SLOTS, memory_per_sku))


def apply_correction(
    store: CatalogStore,
    embedder: Embedder | None,
    sku: str,
    crop: Crop,
    correction_id: str,
    *,
    memory_per_sku: int = DEFAULT_MEMORY_PER_SKU,
    now: datetime | None = None,
) -> CorrectionResult:
    """Add one labelled crop of ``sku`` to the catalogue as a bounded-memory exemplar.

    ``crop`` is embedded with ``embedder``; a 1-D float array (or one row) is
    taken as an embedding the runtime already computed, and is then the only
    thing accepted when ``embedder`` is None. Raises :class:`UnknownSkuError`
    for a SKU not in the catalogue and :class:`DiscontinuedSkuError` for one
    taken out of recognition.
    """
    _check_id(correction_id)
    correction_slots(memory_per_sku, 0)  # refuses a bad bound before any work
    record = _recorded(store, correction_id)
    if record is not None:
        return _already_applied(store, correction_id, sku, record, memory_per_sku)
    _check_sku(store, sku)
    vector = _embed(store, embedder, crop)
    when = (now or datetime.now(UTC)).isoformat(timespec="milliseconds")
    source = SOURCE_PREFIX + correction_id
    with store.change("correct", f"correct {sku} ({correction_id})"):
        # Looked at again under the write lock: another writer may have got there first.
        record = _recorded(store, correction_id)
        if record is not None:
            return _already_applied(store, correction_id, sku, record, memory_per_sku)
        _check_sku(store, sku)
        store.add_exemplars(sku, vector[None, :], [source], kind=CORRECTION_KIND)
        references, kept, slots, evicted = _enforce_memory(store, sku, source, memory_per_sku)
        store.meta_set(
            APPLIED_META_PREFIX + correction_id, json.dumps({"sku": sku, "applied_at": when})
        )
        _refresh_prototypes(store, [sku])
    return CorrectionResult(
        correction_id=correction_id,
        sku=sku,
        applied=True,
        catalog_version=store.version,
        references=references,
        corrections=kept,
        slots=slots,
        evicted=evicted,
    )


def _enforce_memory(
    store: CatalogStore, sku: str, newest: str, memory_per_sku: int
) -> tuple[int, int, int, tuple[str, ...]]:
    """Drop the corrections herding leaves out; returns (refs, kept, slots, evicted sources)."""
    ex = store.exemplars(skus=[sku])
    is_correction = np.array([k == CORRECTION_KIND for k in ex.kinds], dtype=bool)
    is_newest = np.array([s == newest for s in ex.sources], dtype=bool)
    references = int((~is_correction).sum())
    seen_sum, seen_count = _seen(store, sku, ex.vectors[is_correction & ~is_newest])
    seen_sum = seen_sum + ex.vectors[is_newest].sum(axis=0)
    seen_count += int(is_newest.sum())
    _remember_seen(store, sku, seen_sum, seen_count)
    slots = correction_slots(memory_per_sku, references)
    older = np.flatnonzero(is_correction & ~is_newest)
    if len(older) + 1 <= slots:
        return references, len(older) + 1, slots, ()
    anchors = ex.vectors[~is_correction | is_newest]
    target = (ex.vectors[~is_correction].sum(axis=0) + seen_sum) / (references + seen_count)
    keep = herding_select(ex.vectors[older], slots - 1, anchors=anchors, target=target)
    doomed = np.delete(older, keep)
    store.remove_exemplars([int(ex.ids[i]) for i in doomed])
    return references, slots, slots, tuple(ex.sources[i] for i in doomed)


def _seen(
    store: CatalogStore, sku: str, stored: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float64], int]:
    """Sum and count of every correction ever applied to ``sku`` before this one.

    A catalogue without the record (corrections written by an older release)
    starts from the corrections it still holds.
    """
    raw = store.meta_get(SEEN_META_PREFIX + sku)
    if raw is None:
        return stored.astype(np.float64).sum(axis=0), int(stored.shape[0])
    value = json.loads(raw)
    total = np.frombuffer(base64.b64decode(value["sum"]), dtype="<f8").astype(np.float64)
    if total.shape[0] != stored.shape[1]:
        raise CorrectionError(f"{store.path}: correction record of {sku!r} has the wrong size")
    return total, int(value["count"])


def _remember_seen(
    store: CatalogStore, sku: str, total: npt.NDArray[np.float64], count: int
) -> None:
    encoded = base64.b64encode(np.ascontiguousarray(total, dtype="<f8").tobytes()).decode()
    store.meta_set(SEEN_META_PREFIX + sku, json.dumps({"count": count, "sum": encoded}))


def _already_applied(
    store: CatalogStore, correction_id: str, sku: str, record: dict[str, str], memory: int
) -> CorrectionResult:
    if record.get("sku") != sku:
        raise CorrectionConflictError(
            f"correction {correction_id!r} was already applied to SKU {record.get('sku')!r}, "
            f"not {sku!r}; a correction id names one answer"
        )
    ex = store.exemplars(skus=[sku])
    corrections = sum(k == CORRECTION_KIND for k in ex.kinds)
    references = len(ex) - corrections
    return CorrectionResult(
        correction_id=correction_id,
        sku=sku,
        applied=False,
        catalog_version=store.version,
        references=references,
        corrections=corrections,
        slots=correction_slots(memory, references),
    )


def _recorded(store: CatalogStore, correction_id: str) -> dict[str, str] | None:
    raw = store.meta_get(APPLIED_META_PREFIX + correction_id)
    if raw is None:
        return None
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise CorrectionError(f"{store.path}: unreadable record of correction {correction_id!r}")
    return {str(k): str(v) for k, v in value.items()}


def _check_id(correction_id: str) -> None:
    stripped = correction_id.strip()
    if not stripped or stripped != correction_id or len(correction_id) > MAX_ID_LENGTH:
        raise CorrectionError(
            f"a correction id must be 1 to {MAX_ID_LENGTH} characters without surrounding "
            f"spaces, got {correction_id!r}"
        )


def _check_sku(store: CatalogStore, sku: str) -> None:
    record = store.get_sku(sku)
    if record is None:
        raise UnknownSkuError(f"cannot correct to unknown SKU {sku!r}: it is not in {store.path}")
    if record.status == DISCONTINUED:
        hint = f"; its successor is {record.successor!r}" if record.successor else ""
        raise DiscontinuedSkuError(
            f"SKU {sku!r} is discontinued and no longer recognised, so a correction to it "
            f"would never be used{hint}"
        )


def _embed(store: CatalogStore, embedder: Embedder | None, crop: Crop) -> npt.NDArray[np.float32]:
    """One unit embedding in the catalogue's space, from whatever form the crop came in."""
    if isinstance(crop, np.ndarray) and crop.ndim <= 2 and np.issubdtype(crop.dtype, np.floating):
        vector = _as_embedding(store, crop)
    elif embedder is None:
        raise CorrectionError(
            "a correction without an embedder needs a precomputed embedding (1-D float array)"
        )
    else:
        check_signature(store, embedder)
        if isinstance(crop, np.ndarray):
            vector = embedder.embed_arrays([crop])[0]
        else:
            result = embedder.embed_paths([crop])
            if result.errors:
                raise ImageDecodeError(result.errors[0])
            vector = result.vectors[0]
    return vector


def _as_embedding(store: CatalogStore, array: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
    if array.ndim == 2 and array.shape[0] != 1:
        raise CorrectionError(f"one correction takes one embedding, got shape {array.shape}")
    flat = np.asarray(array, dtype=np.float64).reshape(-1)
    dim = store.embedding_dim
    if dim is not None and flat.shape[0] != dim:
        raise CorrectionError(
            f"embedding has dimension {flat.shape[0]} but the catalogue's have {dim}"
        )
    if not np.isfinite(flat).all() or not np.any(flat):
        raise CorrectionError("embedding is zero or contains NaN or infinite values")
    return l2_normalise(flat)
