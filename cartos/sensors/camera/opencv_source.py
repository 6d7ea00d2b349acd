"""A live camera through OpenCV: USB device index, video file or network stream.

The basket camera is consumer hardware on a cable that shoppers knock about,
so losing it is normal operation, not an exception: when reads fail or the
device vanishes, the capture is released and reopened with bounded exponential
backoff (fast recovery from a blip, no busy loop against a dead port), and the
stats count each reconnect. Frames are stamped with the host monotonic clock
the moment ``grab()`` returns, which is the closest the host sees to exposure
and the same clock the scale's events carry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from cartos.sensors.camera.source import Clock, ThreadedSource

Target = int | str | Path
"""A device index (``0``), a video file path, or a stream URL (``rtsp://…``)."""


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` the source uses (tests may inject another)."""

    def isOpened(self) -> bool: ...  # noqa: N802 - OpenCV's name

    def grab(self) -> bool: ...

    def retrieve(self) -> tuple[bool, Any]: ...

    def set(self, prop_id: int, value: float) -> bool: ...

    def get(self, prop_id: int) -> float: ...

    def release(self) -> None: ...


CaptureFactory = Callable[[Target], Capture]


@dataclass(frozen=True)
class Backoff:
    """Delays between reconnect attempts: ``initial * factor**n``, capped at ``maximum``.

    0.25 s first, so a USB re-enumeration (about half a second) is caught on the
    second try; capped at 5 s, so a camera plugged back in works again within
    seconds while a dead port costs a few log lines a minute, not a busy core.
    """

    initial: float = 0.25
    factor: float = 2.0
    maximum: float = 5.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if attempt <= 0:
            return self.initial
        exponent = min(attempt, 64)
        return float(min(self.maximum, self.initial * self.factor**exponent))


@dataclass(frozen=True)
class CaptureSettings:
    """What the device reports after opening (it may ignore what was requested)."""

    width: int
    height: int
    fps: float


def open_capture(target: Target, timeout_s: float = 5.0) -> Capture:
    """Open ``target`` with OpenCV; stream URLs get open/read timeouts.

    Without the timeouts the FFmpeg backend waits about 30 s on an unreachable
    stream, during which the source cannot even be stopped.
    """
    if isinstance(target, int):
        return cv2.VideoCapture(target)
    location = str(target)
    if "://" in location:
        ms = int(timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        return cv2.VideoCapture(location, cv2.CAP_ANY, params)
    return cv2.VideoCapture(location)


class OpenCVSource(ThreadedSource):
    """Frames from ``cv2.VideoCapture``, reconnecting for ever until stopped.

    ``width``/``height``/``fps`` are requests the driver may round or ignore
    (see :attr:`settings` for what it chose). ``failures_to_reconnect``
    consecutive failed reads count as a lost device: one failed read is common
    on USB cameras and not worth a reopen that costs half a second. A video file
    reaches its end the same way and is therefore replayed from the start;
    ``pace_fps`` throttles grabs for such files, which OpenCV otherwise decodes
    as fast as it can (leave it unset for live cameras, whose driver paces
    ``grab()`` and would only buffer stale frames if grabbed more slowly).
    """

    def __init__(
        self,
        target: Target,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        buffer_size: int | None = None,
        pace_fps: float | None = None,
        failures_to_reconnect: int = 3,
        backoff: Backoff | None = None,
        capture_factory: CaptureFactory = open_capture,
        max_queue: int = 8,
        name: str | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(name or f"opencv:{target}", max_queue=max_queue, clock=clock)
        if failures_to_reconnect < 1:
            raise ValueError("failures_to_reconnect must be at least 1")
        if pace_fps is not None and pace_fps <= 0:
            raise ValueError("pace_fps must be positive")
        self._target = target
        self._requests: list[tuple[int, float]] = [
            (prop, float(value))
            for prop, value in (
                (cv2.CAP_PROP_FRAME_WIDTH, width),
                (cv2.CAP_PROP_FRAME_HEIGHT, height),
                (cv2.CAP_PROP_FPS, fps),
                (cv2.CAP_PROP_BUFFERSIZE, buffer_size),
            )
            if value is not None
        ]
        self._pace = 1.0 / pace_fps if pace_fps else 0.0
        self._failures_to_reconnect = failures_to_reconnect
        self._backoff = backoff or Backoff()
        self._factory = capture_factory
        self._settings: CaptureSettings | None = None

    @property
    def settings(self) -> CaptureSettings | None:
        """Resolution and rate the device reported at the last successful open."""
        return self._settings

    def _run(self) -> None:
        attempt = 0
        ever_opened = False
        while not self._is_stopping:
            capture = self._try_open()
            if capture is None:
                if not self._sleep(self._backoff.delay(attempt)):
                    return
                attempt += 1
                continue
            if ever_opened:
                self._record_reconnect()
            ever_opened = True
            try:
                if self._grab_until_lost(capture):
                    attempt = 0
            finally:
                capture.release()
            if not self._sleep(self._backoff.delay(attempt)):
                return
            attempt += 1

    def _try_open(self) -> Capture | None:
        try:
            capture = self._factory(self._target)
        except (cv2.error, OSError) as exc:
            self._record_error(f"cannot open {self._target}: {exc}")
            return None
        if not capture.isOpened():
            capture.release()
            self._record_error(f"cannot open {self._target}")
            return None
        for prop, value in self._requests:
            capture.set(prop, value)
        self._settings = CaptureSettings(
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            fps=float(capture.get(cv2.CAP_PROP_FPS)),
        )
        return capture

    def _grab_until_lost(self, capture: Capture) -> bool:
        """Publish frames until the device fails or the source stops.

        Returns True if at least one frame arrived, which resets the backoff.
        """
        failures = 0
        got_any = False
        next_due = self._clock()
        while not self._is_stopping:
            if self._pace and not self._sleep(next_due - self._clock()):
                return got_any
            grabbed = self._grab(capture)
            if grabbed is None:
                failures += 1
                if failures >= self._failures_to_reconnect:
                    self._record_error(
                        f"{self._target}: {failures} failed reads, reopening the capture"
                    )
                    return got_any
                continue
            image, t = grabbed
            failures = 0
            got_any = True
            next_due = max(next_due + self._pace, t)
            if not self._publish(image, t, owned=True):
                return got_any
        return got_any

    def _grab(self, capture: Capture) -> tuple[np.ndarray, float] | None:
        """One frame and its timestamp, taken when ``grab()`` returned (before decoding)."""
        try:
            if not capture.grab():
                return None
            t = self._clock()
            ok, image = capture.retrieve()
        except cv2.error:
            return None
        if not ok or not isinstance(image, np.ndarray) or image.size == 0:
            return None
        return image, t
