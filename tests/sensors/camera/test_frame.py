"""Frames: what images they accept, and that they cannot be changed behind a reader's back."""

from __future__ import annotations

import numpy as np
import pytest

from cartos.sensors.camera import Frame, FrameFormatError, as_bgr


def test_bgr_is_copied_and_frozen_without_touching_the_callers_array() -> None:
    original = np.zeros((8, 10, 3), np.uint8)
    bgr = as_bgr(original)
    assert bgr.shape == (8, 10, 3)
    assert not bgr.flags.writeable
    assert original.flags.writeable
    original[0, 0] = 255
    assert bgr[0, 0, 0] == 0


def test_owned_array_is_frozen_in_place() -> None:
    fresh = np.zeros((8, 10, 3), np.uint8)
    bgr = as_bgr(fresh, copy=False)
    assert np.shares_memory(bgr, fresh)
    with pytest.raises(ValueError):
        bgr[0, 0, 0] = 1


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((6, 7), (6, 7, 3)), ((6, 7, 1), (6, 7, 3)), ((6, 7, 4), (6, 7, 3))],
)
def test_grey_and_bgra_become_bgr(shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    image = np.full(shape, 77, np.uint8)
    bgr = as_bgr(image)
    assert bgr.shape == expected
    assert int(bgr[3, 3, 1]) == 77


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4, 3), np.float32),
        np.zeros((0, 4, 3), np.uint8),
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((2, 4, 4, 3), np.uint8),
    ],
)
def test_unusable_arrays_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(FrameFormatError):
        as_bgr(bad)


def test_frame_reports_its_size() -> None:
    frame = Frame(image=as_bgr(np.zeros((30, 40, 3), np.uint8)), t=1.5, seq=3, source="x")
    assert (frame.width, frame.height, frame.nbytes) == (40, 30, 30 * 40 * 3)
