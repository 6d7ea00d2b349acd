"""Change detection on synthetic basket scenes: items found, noise and lighting ignored."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cartos.sensors.camera import ChangeParams, MotionScorer, Region, changed_region
from tests.sensors.camera.scenes import (
    basket_background,
    brighter,
    place,
    product_image,
    with_noise,
)


def random_item(seed: int) -> tuple[np.ndarray, int, int]:
    rng = np.random.default_rng(seed)
    w, h = int(rng.integers(50, 200)), int(rng.integers(50, 200))
    return product_image(w, h, seed), int(rng.integers(0, 640 - w)), int(rng.integers(0, 480 - h))


@pytest.mark.parametrize("seed", range(12))
def test_item_found_despite_a_brighter_scene(seed: int) -> None:
    background = basket_background(seed=seed)
    item, x, y = random_item(seed)
    after, truth = place(background, item, x, y)
    before_frame = with_noise(background, 5, seed * 2)
    after_frame = with_noise(brighter(after, 1.2), 5, seed * 2 + 1)
    found = changed_region(before_frame, after_frame)
    assert found is not None
    assert found.iou(truth) >= 0.7, (found, truth)


def test_item_found_when_the_light_dims() -> None:
    background = basket_background(seed=5)
    after, truth = place(background, product_image(140, 100, 5), 60, 300)
    found = changed_region(with_noise(background, 5, 1), with_noise(brighter(after, 0.8), 5, 2))
    assert found is not None and found.iou(truth) >= 0.7


def test_item_as_bright_as_the_basket_is_still_seen() -> None:
    """A coloured packet with the basket's grey levels: invisible to a grey-only diff."""
    background = basket_background(seed=2)
    x, y, w, h = 200, 150, 150, 110
    patch = background[y : y + h, x : x + w]
    luma = cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY).astype(np.float32)
    red = np.minimum(255.0, luma * 1.4)
    blue = luma * 0.5
    green = (luma - 0.114 * blue - 0.299 * red) / 0.587
    item = np.clip(np.rint(np.dstack([blue, green, red])), 0, 255).astype(np.uint8)
    after, truth = place(background, item, x, y)
    grey_change = np.abs(
        cv2.cvtColor(after, cv2.COLOR_BGR2GRAY).astype(int)
        - cv2.cvtColor(background, cv2.COLOR_BGR2GRAY).astype(int)
    )
    assert grey_change.max() <= 2  # the premise: in grey, nothing changed
    found = changed_region(with_noise(background, 4, 3), with_noise(after, 4, 4))
    assert found is not None and found.iou(truth) >= 0.7


@pytest.mark.parametrize("gain", [1.0, 1.2, 0.85])
@pytest.mark.parametrize("seed", range(4))
def test_noise_and_lighting_alone_are_no_change(seed: int, gain: float) -> None:
    background = basket_background(seed=seed)
    before = with_noise(background, 6, seed)
    after = with_noise(brighter(background, gain), 6, seed + 100)
    assert changed_region(before, after) is None


def test_removed_item_is_found_too() -> None:
    background = basket_background(seed=8)
    with_item, truth = place(background, product_image(100, 140, 8), 400, 60)
    found = changed_region(with_noise(with_item, 4, 1), with_noise(background, 4, 2))
    assert found is not None and found.iou(truth) >= 0.7


def test_small_specks_are_below_the_minimum_area() -> None:
    background = basket_background(seed=1)
    speck = np.full((4, 4, 3), 255, np.uint8)
    after, _ = place(background, speck, 100, 100)
    assert changed_region(background, after) is None
    # the same speck counts when the minimum area is lowered below it
    found = changed_region(background, after, ChangeParams(min_area_fraction=0.0, open_kernel=1))
    assert found is not None and found.gap(Region(100, 100, 4, 4)) == 0


def test_two_halves_of_one_item_are_merged() -> None:
    """A bottle whose middle matches the basket shows as two blobs; the box spans both."""
    background = basket_background(seed=4)
    after, top = place(background, product_image(80, 60, 1), 250, 100)
    after, bottom = place(after, product_image(80, 60, 2), 250, 200)
    found = changed_region(background, after)
    assert found is not None and found.iou(top.union(bottom)) >= 0.8


def test_frames_of_different_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        changed_region(np.zeros((40, 40, 3), np.uint8), np.zeros((40, 50, 3), np.uint8))


def test_motion_score_rises_with_motion_and_ignores_noise() -> None:
    background = basket_background(seed=6)
    scorer = MotionScorer()
    assert scorer.update(with_noise(background, 5, 0)) is None
    still = scorer.update(with_noise(brighter(background, 1.1), 5, 1))
    moved, _ = place(background, product_image(120, 120, 6), 100, 100)
    moving = scorer.update(with_noise(moved, 5, 2))
    assert still is not None and moving is not None
    assert still < 0.001
    assert moving > 0.03


def test_region_geometry() -> None:
    a = Region(10, 10, 20, 20)
    b = Region(20, 20, 20, 20)
    assert a.intersection_area(b) == 100
    assert a.iou(b) == pytest.approx(100 / 700)
    assert a.union(b) == Region(10, 10, 30, 30)
    assert a.gap(Region(35, 10, 5, 5)) == 5
    assert a.scaled(2.0, 0.5) == Region(20, 5, 40, 10)
    assert a.padded(0.5, 35, 100) == Region(0, 0, 35, 40)
    image = np.arange(50 * 50 * 3, dtype=np.uint8).reshape(50, 50, 3)
    crop = a.crop(image)
    assert crop.shape == (20, 20, 3)
    assert np.array_equal(crop, image[10:30, 10:30])
    with pytest.raises(ValueError):
        Region(0, 0, 0, 5)
