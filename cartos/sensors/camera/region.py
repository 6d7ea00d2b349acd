"""An axis-aligned pixel rectangle: where in a frame something changed.

The change detector reports one, the recogniser crops with it, tests score it
by intersection over union; one small type keeps the corner arithmetic (and
its off-by-one traps) in a single place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Region:
    """Pixels ``x <= col < x + w`` and ``y <= row < y + h`` of an image."""

    x: int
    y: int
    w: int
    h: int

    def __post_init__(self) -> None:
        if self.w <= 0 or self.h <= 0:
            raise ValueError(f"region needs a positive size, got {self.w}x{self.h}")

    @property
    def x2(self) -> int:
        """One past the right-most column."""
        return self.x + self.w

    @property
    def y2(self) -> int:
        """One past the bottom row."""
        return self.y + self.h

    @property
    def area(self) -> int:
        return self.w * self.h

    @classmethod
    def from_corners(cls, x1: int, y1: int, x2: int, y2: int) -> Region:
        """Region from a top-left corner and an exclusive bottom-right corner."""
        return cls(x1, y1, x2 - x1, y2 - y1)

    def union(self, other: Region) -> Region:
        """The smallest region containing both."""
        return Region.from_corners(
            min(self.x, other.x),
            min(self.y, other.y),
            max(self.x2, other.x2),
            max(self.y2, other.y2),
        )

    def intersection_area(self, other: Region) -> int:
        w = min(self.x2, other.x2) - max(self.x, other.x)
        h = min(self.y2, other.y2) - max(self.y, other.y)
        return max(0, w) * max(0, h)

    def iou(self, other: Region) -> float:
        """Intersection over union, 0 (disjoint) to 1 (identical)."""
        inter = self.intersection_area(other)
        return inter / float(self.area + other.area - inter)

    def gap(self, other: Region) -> int:
        """Pixels between the two boxes (0 when they touch or overlap)."""
        dx = max(0, max(self.x, other.x) - min(self.x2, other.x2))
        dy = max(0, max(self.y, other.y) - min(self.y2, other.y2))
        return max(dx, dy)

    def scaled(self, sx: float, sy: float) -> Region:
        """The region in an image ``sx`` times wider and ``sy`` times taller (rounded outwards)."""
        return Region.from_corners(
            math.floor(self.x * sx),
            math.floor(self.y * sy),
            math.ceil(self.x2 * sx),
            math.ceil(self.y2 * sy),
        )

    def padded(self, fraction: float, width: int, height: int) -> Region:
        """Grown by ``fraction`` of its size on every side, clipped to a width×height image.

        A crop with some margin recognises better than one cut at the item's
        edge, and the detected box is often a few pixels short of the item.
        """
        px = round(self.w * fraction)
        py = round(self.h * fraction)
        return Region.from_corners(
            max(0, self.x - px),
            max(0, self.y - py),
            min(width, self.x2 + px),
            min(height, self.y2 + py),
        )

    def crop(self, image: np.ndarray) -> np.ndarray:
        """A copy of this region of ``image`` (a copy, so the crop outlives the frame)."""
        return np.array(image[self.y : self.y2, self.x : self.x2], copy=True)
