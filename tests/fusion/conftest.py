"""A small hand-made catalogue whose weights and barcodes make each fusion rule testable."""

from __future__ import annotations

import pytest

from cartos.catalog.records import SkuRecord
from cartos.fusion import CatalogueView, FusionPolicy, fit_fusion_calibration
from tests.fusion import synthetic_events
from tests.fusion.synthetic_events import ean13

COLA = SkuRecord("cola-330", "Cola 330 ml", ean13("500000000001"), "Fizz", "soda", 345, 10)
LEMON = SkuRecord("lemon-330", "Lemonade 330 ml", ean13("500000000002"), "Fizz", "soda", 345, 10)
CHIPS = SkuRecord("chips-150", "Chips 150 g", ean13("500000000003"), "Crunch", "snacks", 160, 5)
WINE = SkuRecord("wine-750", "Red wine 750 ml", ean13("500000000004"), "Vino", "wine", 1250, 38)
APPLE = SkuRecord("apple", "Apple, loose", None, None, "produce", 180, 60)
BANANA = SkuRecord("banana", "Banana, loose", None, None, "produce", 120, 40)
MELON = SkuRecord("melon", "Melon", None, None, "produce", 1500, 500)
NO_WEIGHT = SkuRecord("card", "Greeting card", ean13("500000000005"), "Paper", "other")


@pytest.fixture(scope="session")
def catalogue() -> CatalogueView:
    return CatalogueView.from_records([COLA, LEMON, CHIPS, WINE, APPLE, BANANA, MELON, NO_WEIGHT])


@pytest.fixture(scope="session")
def policy(catalogue: CatalogueView) -> FusionPolicy:
    """A policy fitted on synthetic camera × scale events of a larger world.

    The hand-made catalogue's tests only need thresholds of realistic size;
    the confidence model depends on features, not on SKU names.
    """
    w = synthetic_events.world(60, seed=1)
    return fit_fusion_calibration(synthetic_events.events(w, 3000, seed=2), w.catalogue)
