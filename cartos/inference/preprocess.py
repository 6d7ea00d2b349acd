"""Image decoding and backbone input preparation.

One place turns bytes or a path into the tensor the backbone expects, so the
model build, the runtime and every benchmark feed the network identically: a
quantised model calibrated on one preprocessing and run on another silently
loses accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cartos.inference.errors import ImageDecodeError

IMAGENET_MEAN_RGB: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes a network input; recorded in the model card."""

    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN_RGB
    std: tuple[float, float, float] = IMAGENET_STD_RGB
    layout: str = "NCHW"
    colour: str = "RGB"


def decode_image(source: str | Path | bytes) -> np.ndarray:
    """Decode an image file or encoded bytes to a BGR uint8 array.

    Raises ImageDecodeError (never returns None, never raises cv2.error) so a
    corrupt camera frame or a broken catalogue image is reported, not crashed on.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        buf = np.frombuffer(bytes(source), dtype=np.uint8)
        label = "<bytes>"
    else:
        path = Path(source)
        label = str(path)
        try:
            buf = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            raise ImageDecodeError(f"{label}: cannot read ({exc.strerror or exc})") from exc
    if buf.size == 0:
        raise ImageDecodeError(f"{label}: empty file")
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # pragma: no cover - depends on codec build
        raise ImageDecodeError(f"{label}: not a decodable image ({exc})") from exc
    if image is None or image.size == 0:
        raise ImageDecodeError(f"{label}: not a decodable image")
    if image.shape[0] < 4 or image.shape[1] < 4:
        raise ImageDecodeError(f"{label}: image too small ({image.shape[1]}x{image.shape[0]})")
    return image


def to_tensor(image_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Resize (stretch) to the square input and normalise; returns CHW float32.

    Item crops are stretched rather than letterboxed: padding wastes most of
    the 224 px on tall bottles and measurably hurts retrieval on shelf crops.
    """
    interp = cv2.INTER_AREA if min(image_bgr.shape[:2]) > spec.size else cv2.INTER_LINEAR
    resized = cv2.resize(image_bgr, (spec.size, spec.size), interpolation=interp)
    rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    rgb -= np.asarray(spec.mean, dtype=np.float32)
    rgb /= np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def hflip(image_bgr: np.ndarray) -> np.ndarray:
    """Horizontal mirror used for test-time augmentation."""
    return np.ascontiguousarray(image_bgr[:, ::-1])
