"""Regenerate the synthetic camera frames the scenarios use: ``python generate.py``.

An empty wire basket seen from above, and the same basket with a packaged item
in it under slightly brighter light: enough for change detection to have
something real to find. Drawn with OpenCV, deterministic.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def basket(width: int = 320, height: int = 240) -> np.ndarray:
    img = np.full((height, width, 3), (60, 62, 66), np.uint8)
    for x in range(0, width, 16):
        cv2.line(img, (x, 0), (x, height), (150, 150, 155), 2)
    for y in range(0, height, 16):
        cv2.line(img, (0, y), (width, y), (150, 150, 155), 2)
    return img


def with_item(img: np.ndarray) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (120, 80), (200, 170), (30, 60, 200), -1)
    cv2.rectangle(out, (130, 95), (190, 120), (240, 240, 240), -1)
    cv2.putText(out, "COLA", (134, 115), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (20, 20, 160), 2)
    return cv2.convertScaleAbs(out, alpha=1.0, beta=12)


if __name__ == "__main__":
    here = Path(__file__).parent
    empty = basket()
    cv2.imwrite(str(here / "basket_empty.png"), empty)
    cv2.imwrite(str(here / "basket_item.png"), with_item(empty))
