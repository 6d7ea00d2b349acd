from __future__ import annotations

import pytest

from cartos.fusion import (
    BasketLine,
    CatalogueView,
    EvidenceError,
    FusionPolicy,
    VisionEvidence,
    WeightEvidence,
    match_removal,
)
from cartos.fusion.answer import REMOVED_NEVER_ADDED

BASKET = [
    BasketLine("cola-330", 2, 690),
    BasketLine("chips-150", 1, 161),
    BasketLine("wine-750", 1, 1249),
    BasketLine("banana", 1, 612),  # a bunch, priced by its measured weight
]


def test_removal_matches_line_and_quantity(catalogue: CatalogueView, policy: FusionPolicy) -> None:
    two = match_removal(WeightEvidence(-688), BASKET, catalogue, policy)
    assert (two.sku, two.quantity, two.decision) == ("cola-330", 2, "accept")
    one = match_removal(WeightEvidence(-344), BASKET, catalogue, policy)
    assert (one.sku, one.quantity) == ("cola-330", 1)
    chips = match_removal(WeightEvidence(-159), BASKET, catalogue, policy)
    assert chips.sku == "chips-150" and chips.alerts == []


def test_weighed_goods_match_on_the_weight_measured_when_added(
    catalogue: CatalogueView, policy: FusionPolicy
) -> None:
    answer = match_removal(WeightEvidence(-611), BASKET, catalogue, policy)
    assert answer.sku == "banana" and answer.quantity == 1


def test_weight_no_line_explains_is_removed_never_added(
    catalogue: CatalogueView, policy: FusionPolicy
) -> None:
    answer = match_removal(WeightEvidence(-480), BASKET, catalogue, policy)
    assert answer.decision == "unknown" and answer.sku is None
    assert answer.alert_kinds == [REMOVED_NEVER_ADDED]
    empty = match_removal(WeightEvidence(-344), [], catalogue, policy)
    assert empty.alert_kinds == [REMOVED_NEVER_ADDED]


def test_vision_separates_lines_of_equal_weight(
    catalogue: CatalogueView, policy: FusionPolicy
) -> None:
    basket = [BasketLine("cola-330", 1), BasketLine("lemon-330", 1)]
    blind = match_removal(WeightEvidence(-345), basket, catalogue, policy)
    assert blind.decision == "confirm"  # 50/50 on weight alone
    seen = match_removal(
        WeightEvidence(-345),
        basket,
        catalogue,
        policy,
        vision=VisionEvidence({"lemon-330": 0.95, "cola-330": 0.03}, 0.01),
    )
    assert seen.sku == "lemon-330" and seen.decision == "accept"


def test_removal_needs_a_negative_delta(catalogue: CatalogueView, policy: FusionPolicy) -> None:
    with pytest.raises(EvidenceError):
        match_removal(WeightEvidence(100), BASKET, catalogue, policy)
