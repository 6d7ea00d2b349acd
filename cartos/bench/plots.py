"""Small line charts drawn with OpenCV, for benchmark reports.

matplotlib is not a dependency of cartos (the cart image has no room for it), and
OpenCV is already there, so benchmark plots are drawn the same way the calibration
report's reliability diagram is (:func:`cartos.inference.calibration_report.reliability_png`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

Colour = tuple[int, int, int]
"""BGR, as OpenCV draws."""

BLUE: Colour = (200, 80, 0)
ORANGE: Colour = (0, 128, 255)
LIGHT_BLUE: Colour = (230, 170, 100)
LIGHT_ORANGE: Colour = (100, 175, 250)


@dataclass(frozen=True)
class Series:
    """One line: a label for the legend, one y per x (None: no point), a colour."""

    label: str
    values: Sequence[float | None]
    colour: Colour
    thickness: int = 2


def line_chart_png(
    xs: Sequence[float],
    series: Sequence[Series],
    title: str,
    x_label: str,
    y_label: str,
    y_range: tuple[float, float] = (0.0, 1.0),
    log_x: bool = True,
) -> bytes:
    """Draw ``series`` against ``xs`` as PNG bytes (log x by default: sizes grow geometrically)."""
    if not xs:
        raise ValueError("a chart needs at least one x value")
    width, height, left, right, top = 640, 400, 60, 20, 40
    bottom = 60 + 18 * len(series)
    img = np.full((top + height + bottom, left + width + right, 3), 255, np.uint8)

    def fx(v: float) -> float:
        return math.log10(v) if log_x else float(v)

    lo_x, hi_x = fx(min(xs)), fx(max(xs))
    span_x = hi_x - lo_x or 1.0
    lo_y, hi_y = y_range
    span_y = hi_y - lo_y or 1.0

    def xy(x: float, y: float) -> tuple[int, int]:
        px = left + (fx(x) - lo_x) / span_x * width
        py = top + (1 - (min(max(y, lo_y), hi_y) - lo_y) / span_y) * height
        return round(px), round(py)

    black, grey = (0, 0, 0), (220, 220, 220)
    for t in np.linspace(lo_y, hi_y, 6):
        _, y = xy(min(xs), float(t))
        cv2.line(img, (left, y), (left + width, y), grey, 1)
        cv2.putText(img, f"{t:.1f}", (left - 35, y + 4), 0, 0.4, black, 1, cv2.LINE_AA)
    for x in xs:
        px, _ = xy(x, lo_y)
        cv2.line(img, (px, top + height), (px, top + height + 5), black, 1)
        cv2.putText(img, f"{x:g}", (px - 14, top + height + 20), 0, 0.4, black, 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (left + width, top + height), black, 1)
    cv2.putText(img, title, (left, top - 15), 0, 0.55, black, 1, cv2.LINE_AA)
    cv2.putText(img, x_label, (left + width // 2 - 60, top + height + 42), 0, 0.45, black, 1,
                cv2.LINE_AA)
    cv2.putText(img, y_label, (5, top - 15), 0, 0.4, black, 1, cv2.LINE_AA)
    for s in series:
        pts = [xy(x, float(v)) for x, v in zip(xs, s.values, strict=True)
               if v is not None and math.isfinite(v)]
        for a, b in itertools.pairwise(pts):
            cv2.line(img, a, b, s.colour, s.thickness, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, p, 4, s.colour, -1, cv2.LINE_AA)
    for n, s in enumerate(series):  # legend under the chart, where it hides no data
        ly = top + height + 70 + 18 * n
        cv2.line(img, (left + 10, ly - 4), (left + 30, ly - 4), s.colour, s.thickness, cv2.LINE_AA)
        cv2.putText(img, s.label, (left + 36, ly), 0, 0.45, s.colour, 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover - PNG encoding of a plain array does not fail
        raise RuntimeError("PNG encoding failed")
    return bytes(buf.tobytes())
