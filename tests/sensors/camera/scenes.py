"""Synthetic basket scenes for the camera tests: a wire-basket floor and pasted items.

Everything is drawn with numpy/OpenCV from a seed, so the tests need no data
set and every failure reproduces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cartos.sensors.camera.region import Region


def basket_background(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """A basket floor: dark plastic with a lighter wire grid, uneven light, mottling."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    shading = 70 + 40 * (xx / width) + 25 * np.sin(yy / height * np.pi)
    grid = ((xx.astype(int) % 24 < 3) | (yy.astype(int) % 24 < 3)).astype(np.float32) * 60
    mottling = rng.normal(0, 6, (height // 8 + 1, width // 8 + 1)).astype(np.float32)
    mottling = np.kron(mottling, np.ones((8, 8), np.float32))[:height, :width]
    grey = shading + grid + mottling
    tint = np.array([1.05, 1.0, 0.92], np.float32)
    basket: np.ndarray = np.clip(grey[:, :, None] * tint, 0, 255).astype(np.uint8)
    return basket


def product_image(width: int, height: int, seed: int = 1) -> np.ndarray:
    """A packaged product seen from above: a coloured box with a printed label."""
    rng = np.random.default_rng(seed)
    colour = rng.integers(20, 236, 3)
    item = np.empty((height, width, 3), np.uint8)
    item[:] = colour
    label = 255 - colour
    y0, y1 = height // 3, 2 * height // 3
    item[y0:y1, width // 8 : width - width // 8] = label
    for _ in range(6):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        item[max(0, y - 4) : y + 4, max(0, x - 10) : x + 10] = rng.integers(0, 256, 3)
    return item


def place(scene: np.ndarray, item: np.ndarray, x: int, y: int) -> tuple[np.ndarray, Region]:
    """``scene`` with ``item`` pasted at (x, y), and the item's true region."""
    out = scene.copy()
    h, w = item.shape[:2]
    out[y : y + h, x : x + w] = item
    return out, Region(x, y, w, h)


def with_noise(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Sensor noise: independent Gaussian noise per pixel and channel."""
    rng = np.random.default_rng(seed)
    noisy = image.astype(np.float32) + rng.normal(0, sigma, image.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def brighter(image: np.ndarray, gain: float) -> np.ndarray:
    """A global illumination change: every pixel scaled by ``gain`` (clipped)."""
    lit: np.ndarray = np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    return lit


def numbered_frame(index: int, width: int = 160, height: int = 120) -> np.ndarray:
    """A frame whose mean grey level encodes ``index`` (survives JPEG compression)."""
    level = 20 + (index * 37) % 216
    return np.full((height, width, 3), level, np.uint8)


def level_of(image: np.ndarray) -> int:
    """The grey level :func:`numbered_frame` painted, read back from a decoded frame."""
    return round(float(image.mean()))


def write_video(path: str, frames: list[np.ndarray], fps: float = 25.0) -> None:
    """Write ``frames`` as an MJPG AVI, which every OpenCV build can read back."""
    import cv2

    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    for frame in frames:
        writer.write(frame)
    writer.release()


def index_of(image: np.ndarray, count: int) -> int:
    """Which of the first ``count`` numbered frames ``image`` is (nearest grey level)."""
    level = float(image.mean())
    return min(range(count), key=lambda i: abs(level_of(numbered_frame(i, 4, 4)) - level))


def hand(width: int, height: int = 70) -> np.ndarray:
    """A skin-coloured blob standing in for a shopper's hand."""
    blob = np.zeros((height, width, 3), np.uint8)
    blob[:] = (90, 140, 200)
    return blob


@dataclass
class Placement:
    """Frames of one item put into the basket, and the truth about them."""

    frames: list[tuple[float, np.ndarray]]
    item: Region
    t_motion_start: float
    t_motion_end: float
    final_scene: np.ndarray


def placement_sequence(
    background: np.ndarray,
    *,
    t0: float = 100.0,
    fps: float = 15.0,
    still_before: int = 12,
    moving: int = 12,
    still_after: int = 12,
    item_at: tuple[int, int] = (300, 200),
    item_size: tuple[int, int] = (120, 90),
    seed: int = 3,
) -> Placement:
    """A hand carrying an item in from the right and leaving without it, with sensor noise.

    Still basket for ``still_before`` frames, ``moving`` frames of hand motion
    (which stop now and then, as hands do), then the still basket with the item.
    """
    item = product_image(item_size[0], item_size[1], seed=seed)
    ix, iy = item_at
    width = background.shape[1]
    with_item, region = place(background, item, ix, iy)
    frames: list[tuple[float, np.ndarray]] = []
    dt = 1.0 / fps

    def add(scene: np.ndarray) -> None:
        frames.append((t0 + len(frames) * dt, with_noise(scene, 4, seed * 1000 + len(frames))))

    for _ in range(still_before):
        add(background)
    t_start = t0 + len(frames) * dt
    half = moving // 2
    hand_w = 90
    for k in range(moving):
        if k < half:  # the hand carries the item in from the right edge
            x = width - int((width - ix) * (k + 1) / half)
            scene, _ = place(background, item, min(x, width - item_size[0]), iy)
            hx = min(x + item_size[0] - 20, width - hand_w)
        else:  # the item is down, the hand leaves to the right
            scene = with_item
            hx = min(ix + item_size[0] + int((width - ix) * (k - half) / half), width - hand_w)
        scene, _ = place(scene, hand(hand_w), hx, iy + 10)
        add(scene)
    t_end = t0 + len(frames) * dt
    for _ in range(still_after):
        add(with_item)
    return Placement(frames, region, t_start, t_end, with_item)
