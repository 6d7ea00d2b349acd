"""Removals matched by the camera as well as the scale.

Two basket lines that weighed the same when they went in cannot be told apart
by the scale when one comes out; the crop of what disappeared (cut from the
frames before the hand came in) can.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cartos.catalog.store import CatalogStore
from cartos.fusion.calibration_service import load_policy
from cartos.fusion.catalogue_view import CatalogueItem, CatalogueView
from cartos.fusion.removal import BasketLine
from cartos.inference.embedder import Embedder
from cartos.inference.recognizer import Recognizer
from cartos.runtime.decider import EventDecider
from cartos.runtime.item_events import ItemEvent
from cartos.runtime.simulation import SimulatedStore, render
from cartos.sensors.bridge.events import Settled
from cartos.sensors.camera import Frame, FrameRing

WEIGHT_G = 300.0


@pytest.fixture(scope="module")
def decider(sim_store: SimulatedStore, tmp_path_factory: pytest.TempPathFactory) -> EventDecider:
    with CatalogStore(sim_store.db) as store:
        # Weighed goods (no nominal weight): a removal is matched against the weight
        # measured on the way in, which is the same for both lines here.
        catalogue = CatalogueView([CatalogueItem(r.sku, r.name) for r in
                                   store.list_skus(status="active")])
        recognizer = Recognizer.from_store(store, Embedder())
        policy = load_policy(store)
    return EventDecider(recognizer, catalogue, policy, tmp_path_factory.mktemp("review"))


def _photo(sim_store: SimulatedStore, i: int) -> tuple[str, np.ndarray]:
    product = sorted(sim_store.known.values(), key=lambda p: p.sku)[i]
    image = cv2.imread(str(product.image))
    assert image is not None
    return product.sku, image


def _ring(before: list[tuple[int, np.ndarray]], after: list[tuple[int, np.ndarray]],
          t_event: float) -> FrameRing:
    ring = FrameRing(max_frames=64)
    first, second = render(before), render(after)
    for k in range(30):
        t = t_event - 1.5 + 0.1 * k
        ring.push(Frame(first if t < t_event - 0.5 else second, t, k, "test"))
    return ring


@pytest.mark.parametrize("taken", [0, 1])
def test_the_camera_tells_equal_weights_apart(sim_store: SimulatedStore,
                                              decider: EventDecider, taken: int) -> None:
    (sku_a, photo_a), (sku_b, photo_b) = _photo(sim_store, 0), _photo(sim_store, 5)
    items = [(0, photo_a), (1, photo_b)]
    t = 100.0
    ring = _ring(items, [items[1 - taken]], t)
    event = ItemEvent("w:1:9", Settled(9, t, 0, WEIGHT_G, -WEIGHT_G))
    basket = [BasketLine(sku_a, 1, WEIGHT_G), BasketLine(sku_b, 1, WEIGHT_G)]

    seen = decider.decide(event, ring, basket)
    truth = (sku_a, sku_b)[taken]
    assert seen.sku == truth
    assert seen.vision_candidates[0] == truth
    assert seen.backbone_s > 0

    blind = decider.decide(event, None, basket)  # the scale alone: a coin toss, so it asks
    assert blind.decision != "accept"
    assert blind.prompt_id is not None
    assert {sku_a, sku_b} <= set(blind.commands[-1].options)  # type: ignore[union-attr]
