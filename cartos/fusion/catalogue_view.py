"""What fusion needs to know about the catalogue: weights, barcode keys, groups.

Fusion runs for every item event on the cart, so it reads a small in-memory
view instead of the SQLite store: per SKU its nominal weight and tolerance,
its family and brand, whether it is sold by weight, and the lookup keys a
scan of it will produce. Barcode keys are computed with the same functions
the scanner side uses (:func:`~cartos.sensors.barcode.catalogue_key`), so a
stored UPC-A and a scanned EAN-13 of the same item meet on one key.

Eight-digit stored codes are ambiguous (EAN-8, or a UPC-E that a supplier
listed unexpanded); both readings that pass their check digit are
registered, so either scan finds the item.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cartos.catalog.records import ACTIVE, SkuRecord
from cartos.catalog.store import CatalogStore
from cartos.fusion.weight_model import WeightBackground
from cartos.sensors.barcode import (
    Barcode,
    InvalidBarcodeError,
    VariableMeasureScheme,
    catalogue_key,
    parse_barcode,
)

log = logging.getLogger(__name__)

SOLD_BY_WEIGHT_FAMILIES: frozenset[str] = frozenset(
    {"produce", "fruit", "vegetables", "fruit-vegetables", "loose", "deli", "bulk"}
)
"""Families whose items are weighed goods even when they carry no in-store label code."""


@dataclass(frozen=True)
class CatalogueItem:
    """One SKU as fusion sees it."""

    sku: str
    name: str = ""
    family: str | None = None
    brand: str | None = None
    weight_g: float | None = None
    weight_tol_g: float | None = None
    barcode_keys: frozenset[str] = frozenset()
    sold_by_weight: bool = False


def barcode_keys(
    stored: str, scheme: VariableMeasureScheme | Sequence[VariableMeasureScheme] | None = None
) -> tuple[frozenset[str], bool]:
    """Lookup keys a scan of the item stored under ``stored`` may produce, and variable-measure.

    Returns an empty set (and logs why) for a code that is valid under no reading.
    """
    keys: set[str] = set()
    variable = False
    text = stored.strip()
    try:
        keys.add(catalogue_key(text, scheme))
    except InvalidBarcodeError as exc:
        if len(text) != 8:
            log.warning("stored barcode %r is unusable: %s", stored, exc)
    if len(text) == 8:
        with contextlib.suppress(InvalidBarcodeError):
            keys.add(parse_barcode("]E0" + text, scheme).lookup_key)
        if not keys:
            log.warning("stored 8-digit barcode %r is neither a valid EAN-8 nor UPC-E", stored)
    elif len(text) in (12, 13):
        try:
            variable = parse_barcode(text, scheme).variable_measure is not None
        except InvalidBarcodeError:
            variable = False
    return frozenset(keys), variable


class CatalogueView:
    """SKU → :class:`CatalogueItem` plus barcode key → SKU, built once per catalogue version."""

    def __init__(self, items: Iterable[CatalogueItem]) -> None:
        self.items: dict[str, CatalogueItem] = {}
        self._by_key: dict[str, str] = {}
        items = list(items)
        self.weight_background = WeightBackground.from_weights(
            i.weight_g for i in items if not i.sold_by_weight
        )
        for item in items:
            self.items[item.sku] = item
            for key in sorted(item.barcode_keys):
                other = self._by_key.setdefault(key, item.sku)
                if other != item.sku:
                    log.warning("barcode key %s is listed for %s and %s", key, other, item.sku)

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, sku: object) -> bool:
        return sku in self.items

    def get(self, sku: str) -> CatalogueItem | None:
        return self.items.get(sku)

    def sku_for_key(self, key: str) -> str | None:
        """The SKU listed under a scan's lookup key, or None when the code is not listed."""
        return self._by_key.get(key)

    def sku_for_barcode(self, barcode: Barcode) -> str | None:
        return self.sku_for_key(barcode.lookup_key)

    @classmethod
    def from_records(
        cls,
        records: Iterable[SkuRecord],
        scheme: VariableMeasureScheme | Sequence[VariableMeasureScheme] | None = None,
        sold_by_weight_families: frozenset[str] = SOLD_BY_WEIGHT_FAMILIES,
        sold_by_weight: Mapping[str, bool] | None = None,
    ) -> CatalogueView:
        """Active records only; ``sold_by_weight`` overrides the family/label-code rule per SKU."""
        items = []
        for r in records:
            if r.status != ACTIVE:
                continue
            keys, variable = barcode_keys(r.barcode, scheme) if r.barcode else (frozenset(), False)
            by_weight = variable or (r.family or "") in sold_by_weight_families
            if sold_by_weight is not None and r.sku in sold_by_weight:
                by_weight = sold_by_weight[r.sku]
            items.append(
                CatalogueItem(
                    sku=r.sku,
                    name=r.name,
                    family=r.family,
                    brand=r.brand,
                    weight_g=r.weight_g,
                    weight_tol_g=r.weight_tol_g,
                    barcode_keys=keys,
                    sold_by_weight=by_weight,
                )
            )
        return cls(items)

    @classmethod
    def from_store(
        cls,
        store: CatalogStore,
        scheme: VariableMeasureScheme | Sequence[VariableMeasureScheme] | None = None,
    ) -> CatalogueView:
        return cls.from_records(store.list_skus(status="active"), scheme)
