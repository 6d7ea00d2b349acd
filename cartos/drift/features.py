"""What the drift monitor watches in each item crop and each recognition.

Input statistics catch the camera's world changing (a new light, a dirty lens, a
different basket liner) before accuracy visibly drops; embedding statistics catch what
the backbone makes of it. All are cheap: a 96-pixel thumbnail is enough for every one.
"""

from __future__ import annotations

from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

INPUT_FEATURES: Final = ("brightness", "contrast", "sharpness", "red_balance", "blue_balance")
EMBEDDING_FEATURES: Final = ("top_similarity", "margin")
THUMB: Final = 96


def input_features(crop: npt.NDArray[np.uint8]) -> dict[str, float]:
    """Brightness and contrast (grey mean and std, 0–255), sharpness (log variance of the
    Laplacian), colour balance (log red/green and blue/green mean ratios) of a BGR crop."""
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.size == 0:
        raise ValueError(f"expected a BGR image, got shape {crop.shape}")
    h, w = crop.shape[:2]
    scale = THUMB / max(h, w)
    thumb = cv2.resize(crop, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1 else crop
    grey = cv2.cvtColor(thumb, cv2.COLOR_BGR2GRAY)
    means = thumb.reshape(-1, 3).mean(axis=0) + 1.0  # +1: a black channel stays finite
    lap = cv2.Laplacian(grey, cv2.CV_32F)
    return {
        "brightness": float(grey.mean()),
        "contrast": float(grey.std()),
        "sharpness": float(np.log1p(lap.var())),
        "red_balance": float(np.log(means[2] / means[1])),
        "blue_balance": float(np.log(means[0] / means[1])),
    }


def embedding_features(scores: npt.NDArray[np.floating]) -> dict[str, float]:
    """The nearest prototype's similarity and its margin over the second, from one query's
    scores against every SKU prototype."""
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())[::-1]
    top = float(s[0]) if s.size else 0.0
    return {"top_similarity": top, "margin": top - float(s[1]) if s.size > 1 else 1.0}
