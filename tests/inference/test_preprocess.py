"""Decoding refuses broken images with a clear error, never None or a cv2 crash."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cartos.inference.errors import ImageDecodeError
from cartos.inference.preprocess import InputSpec, decode_image, to_tensor


def _jpeg(tmp_path: Path) -> Path:
    img = np.zeros((64, 48, 3), np.uint8)
    img[:, :24] = (0, 0, 255)
    path = tmp_path / "ok.jpg"
    cv2.imwrite(str(path), img)
    return path


def test_good_image_decodes_and_normalises(tmp_path: Path) -> None:
    img = decode_image(_jpeg(tmp_path))
    assert img.shape == (64, 48, 3)
    t = to_tensor(img, InputSpec())
    assert t.shape == (3, 224, 224) and t.dtype == np.float32
    # left half is pure red (BGR 0,0,255): channel 0 of the RGB tensor is high there
    assert t[0, 112, 10] > t[2, 112, 10]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"this is not an image at all", "not a decodable"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 20, "not a decodable"),
    ],
)
def test_broken_bytes_raise(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(path)


def test_truncated_jpeg_raises_or_decodes_partially(tmp_path: Path) -> None:
    data = _jpeg(tmp_path).read_bytes()
    path = tmp_path / "trunc.jpg"
    path.write_bytes(data[:40])
    with pytest.raises(ImageDecodeError):
        decode_image(path)


def test_missing_file_and_directory_raise(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="cannot read"):
        decode_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageDecodeError):
        decode_image(tmp_path)


def test_tiny_image_is_refused() -> None:
    ok, buf = cv2.imencode(".png", np.zeros((2, 2, 3), np.uint8))
    assert ok
    with pytest.raises(ImageDecodeError, match="too small"):
        decode_image(buf.tobytes())
