"""The live-camera source, driven through the real ``cv2.VideoCapture`` on video files.

A video file path goes through the same OpenCV capture code as a camera; its
end, its deletion and its late appearance are real lost-device situations.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import pytest

from cartos.sensors.camera import Backoff, OpenCVSource
from cartos.sensors.camera.opencv_source import Capture, Target, open_capture
from tests.sensors.camera.scenes import index_of, numbered_frame, write_video

FAST = Backoff(initial=0.02, factor=2.0, maximum=0.1)


def make_video(path: Path, first: int, count: int) -> Path:
    """Write numbered frames ``first..first+count-1``, appearing atomically at ``path``."""
    partial = path.with_name(f".partial-{path.name}")
    write_video(str(partial), [numbered_frame(first + i) for i in range(count)])
    os.replace(partial, path)
    return path


def read_until(source: OpenCVSource, wanted: int, total: int, timeout: float = 10.0) -> bool:
    """Read until a frame numbered ``wanted`` (of ``total``) arrives."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = source.read(0.5)
        if frame is not None and index_of(frame.image, total) == wanted:
            return True
    return False


def test_frames_from_a_video_path_are_stamped_at_grab_time(tmp_path: Path) -> None:
    video = make_video(tmp_path / "cam.avi", 0, 10)
    before = time.monotonic()
    with OpenCVSource(video, pace_fps=200, backoff=FAST) as source:
        frames = [source.read(5.0) for _ in range(5)]
        settings = source.settings
    after = time.monotonic()
    assert all(f is not None for f in frames)
    got = [f for f in frames if f is not None]
    assert [index_of(f.image, 10) for f in got] == [0, 1, 2, 3, 4]
    assert [f.seq for f in got] == [0, 1, 2, 3, 4]
    assert all(before <= f.t <= after for f in got)
    assert all(a.t < b.t for a, b in itertools.pairwise(got))
    assert settings is not None and (settings.width, settings.height) == (160, 120)
    assert all(f.source == f"opencv:{video}" for f in got)


def test_end_of_file_is_a_lost_device_and_the_capture_is_reopened(tmp_path: Path) -> None:
    video = make_video(tmp_path / "cam.avi", 0, 3)
    with OpenCVSource(video, pace_fps=300, backoff=FAST) as source:
        order = [source.read(5.0) for _ in range(7)]
    assert [index_of(f.image, 3) for f in order if f] == [0, 1, 2, 0, 1, 2, 0]
    stats = source.stats
    assert stats.reconnects >= 2
    assert stats.last_error is not None and "failed reads" in stats.last_error


def test_recovers_when_the_file_is_deleted_and_recreated(tmp_path: Path) -> None:
    video = make_video(tmp_path / "cam.avi", 0, 3)
    with OpenCVSource(video, pace_fps=300, backoff=FAST) as source:
        assert source.read(5.0) is not None
        video.unlink()
        deadline = time.monotonic() + 5
        while source.stats.errors < 3 and time.monotonic() < deadline:
            source.read(0.05)
        failed_opens = source.stats.errors
        reconnects_while_gone = source.stats.reconnects
        make_video(video, 10, 3)  # the device comes back, showing something new
        assert read_until(source, wanted=11, total=13)
        stats = source.stats
    assert failed_opens >= 3  # kept trying while the file was gone
    assert stats.reconnects > reconnects_while_gone
    assert stats.frames >= 4


def test_starts_without_the_device_and_picks_it_up_when_it_appears(tmp_path: Path) -> None:
    video = tmp_path / "later.avi"
    with OpenCVSource(video, pace_fps=300, backoff=FAST) as source:
        assert source.read(0.3) is None
        assert source.stats.errors >= 1
        assert source.latest() is None
        make_video(video, 0, 5)
        frame = source.read(5.0)
    assert frame is not None and index_of(frame.image, 5) == 0
    assert source.stats.reconnects == 0  # a first open is not a reconnect


def test_injected_capture_failing_three_times_then_working(tmp_path: Path) -> None:
    """Backoff between failed opens grows exponentially, and the source then streams."""
    video = make_video(tmp_path / "cam.avi", 0, 5)
    calls: list[float] = []

    def flaky(target: Target) -> Capture:
        calls.append(time.monotonic())
        if len(calls) <= 3:
            return open_capture(tmp_path / "not-there.avi")
        return open_capture(target)

    backoff = Backoff(initial=0.05, factor=2.0, maximum=1.0)
    with OpenCVSource(video, pace_fps=300, backoff=backoff, capture_factory=flaky) as source:
        frame = source.read(5.0)
        stats = source.stats
    assert frame is not None and index_of(frame.image, 5) == 0
    assert stats.errors == 3
    gaps = [b - a for a, b in itertools.pairwise(calls[:4])]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2


def test_backoff_is_exponential_and_bounded() -> None:
    backoff = Backoff(initial=0.25, factor=2.0, maximum=5.0)
    delays = [backoff.delay(n) for n in range(10)]
    assert delays[:4] == [0.25, 0.5, 1.0, 2.0]
    assert max(delays) == 5.0
    assert delays == sorted(delays)
    assert backoff.delay(10_000) == 5.0


def test_stop_interrupts_the_backoff_and_joins(tmp_path: Path) -> None:
    slow = Backoff(initial=30.0, factor=2.0, maximum=60.0)
    source = OpenCVSource(tmp_path / "never.avi", backoff=slow, name="stopper")
    source.start()
    time.sleep(0.1)
    start = time.monotonic()
    source.stop()
    assert time.monotonic() - start < 2.0
    assert not any(t.name == "camera-stopper" for t in threading.enumerate())


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        OpenCVSource(0, failures_to_reconnect=0)
    with pytest.raises(ValueError):
        OpenCVSource(0, pace_fps=0)


def test_resolution_request_reaches_the_capture(tmp_path: Path) -> None:
    """Requests are passed to ``set``; the file backend ignores them and reports its own size."""
    video = make_video(tmp_path / "cam.avi", 0, 3)
    requested: list[tuple[int, float]] = []

    class Recording:
        """A real capture that notes every ``set`` call."""

        def __init__(self, location: str) -> None:
            self._capture = cv2.VideoCapture(location)

        def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
            return bool(self._capture.isOpened())

        def grab(self) -> bool:
            return bool(self._capture.grab())

        def retrieve(self) -> tuple[bool, Any]:
            ok, image = self._capture.retrieve()
            return bool(ok), image

        def set(self, prop_id: int, value: float) -> bool:
            requested.append((prop_id, value))
            return bool(self._capture.set(prop_id, value))

        def get(self, prop_id: int) -> float:
            return float(self._capture.get(prop_id))

        def release(self) -> None:
            self._capture.release()

    def factory(target: Target) -> Capture:
        return Recording(str(target))

    with OpenCVSource(video, width=320, height=240, fps=10, capture_factory=factory) as source:
        assert source.read(5.0) is not None
    assert (cv2.CAP_PROP_FRAME_WIDTH, 320.0) in requested
    assert (cv2.CAP_PROP_FRAME_HEIGHT, 240.0) in requested
    assert (cv2.CAP_PROP_FPS, 10.0) in requested
