"""The frame: one camera image and the moment it was taken.

Fusion lines frames up with weight and barcode events, so every frame carries a
host ``time.monotonic()`` timestamp (the clock the serial bridge stamps events
with) and a per-source sequence number whose gaps reveal dropped frames. The
image is made read-only: one frame is shared by the ring buffer, the change
detector and the recogniser on different threads, and nobody may draw on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cartos.sensors.camera.errors import FrameFormatError


@dataclass(frozen=True, eq=False, slots=True)
class Frame:
    """One BGR uint8 image with its capture time.

    ``t`` is host monotonic seconds taken when the frame was grabbed (or its
    scheduled time for replay sources); ``seq`` counts frames produced by
    ``source`` from 0, so a consumer that sees a jump knows frames were dropped.
    """

    image: np.ndarray
    t: float
    seq: int
    source: str

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def nbytes(self) -> int:
        """Memory held by the image, what a ring buffer's byte bound counts."""
        return int(self.image.nbytes)


def as_bgr(image: np.ndarray, *, copy: bool = True) -> np.ndarray:
    """Return ``image`` as a contiguous, read-only BGR uint8 array.

    Grey and BGRA inputs are converted (replayed test images come in all three);
    anything else raises FrameFormatError rather than reaching the detector as a
    shape it would misread. ``copy=False`` is for arrays the caller owns outright
    (a fresh ``VideoCapture.read`` result): a BGR input is then frozen in place
    instead of copied; a caller's array is otherwise never modified.
    """
    if not isinstance(image, np.ndarray):
        raise FrameFormatError(f"frame image must be a numpy array, not {type(image).__name__}")
    if image.dtype != np.uint8:
        raise FrameFormatError(f"frame image must be uint8, not {image.dtype}")
    if image.size == 0:
        raise FrameFormatError("frame image is empty")
    if image.ndim == 2:
        bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 3:
        bgr = np.array(image, order="C", copy=True) if copy else np.ascontiguousarray(image)
    elif image.ndim == 3 and image.shape[2] == 4:
        bgr = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.ndim == 3 and image.shape[2] == 1:
        bgr = cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    else:
        raise FrameFormatError(f"frame image must be grey, BGR or BGRA, not shape {image.shape}")
    bgr.flags.writeable = False
    return bgr
