"""Replay sources: recorded or scripted frames behind the live-camera interface.

The bench, the tests and the hardware-in-the-loop harness need a camera that
shows exactly the frames they chose, at known times. These sources implement
:class:`~cartos.sensors.camera.source.FrameSource` like the live camera, so the
runtime cannot tell them apart.

Timing: frame ``i`` of a paced replay is stamped ``origin + i / fps`` and the
scenario source stamps ``origin + t`` for a frame pushed at scenario time ``t``,
where ``origin`` is the host monotonic time of ``start()`` unless given. In
``realtime`` mode frames appear at those moments (drops counted if the consumer
lags, as with a camera); otherwise they appear as fast as the consumer reads,
losslessly, with the same stamps, so tests run fast and deterministically.

A broken or unreadable image is skipped and counted in ``stats.errors``; a
replay never crashes on bad input data.
"""

from __future__ import annotations

import threading
import time
from abc import abstractmethod
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from cartos.errors import CartosError
from cartos.inference.preprocess import decode_image
from cartos.sensors.camera.errors import ReplaySourceError, ScenarioOrderError
from cartos.sensors.camera.frame import as_bgr
from cartos.sensors.camera.source import Clock, ThreadedSource

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
)
"""Files an image-directory replay picks up; anything else in the folder is ignored."""

DEFAULT_REPLAY_QUEUE = 64
"""Deeper than a camera's queue: replays also feed batch jobs that read in bursts."""


class PacedReplay(ThreadedSource):
    """A replay that produces a sequence of images at a fixed rate, optionally looping.

    Subclasses yield one pass of images from :meth:`_one_pass`; ``None`` marks a
    slot whose image could not be read (already counted), which still uses its
    time slot so later frames keep the times they were recorded at.
    """

    def __init__(
        self,
        name: str,
        *,
        fps: float,
        loop: bool,
        realtime: bool,
        origin: float | None,
        max_queue: int,
        clock: Clock,
    ) -> None:
        if not fps > 0:
            raise ReplaySourceError(f"replay fps must be positive, got {fps}")
        super().__init__(name, max_queue=max_queue, backpressure=not realtime, clock=clock)
        self.fps = float(fps)
        self.loop = loop
        self.realtime = realtime
        self._origin = origin

    @property
    def origin(self) -> float | None:
        """Host monotonic time of frame 0 (None until started, unless given)."""
        return self._origin

    def start(self) -> None:
        if self._origin is None:
            self._origin = self._clock()
        super().start()

    @abstractmethod
    def _one_pass(self) -> Iterator[np.ndarray | None]:
        """Images of one pass through the recording."""

    def _run(self) -> None:
        assert self._origin is not None
        index = 0
        while True:
            produced = 0
            for image in self._one_pass():
                t = self._origin + index / self.fps
                index += 1
                if self.realtime and not self._sleep(t - self._clock()):
                    return
                if self._is_stopping:
                    return
                if image is None:
                    continue
                if not self._publish(image, t, owned=True):
                    return
                produced += 1
            if not self.loop or self._is_stopping:
                return
            if produced == 0:
                self._record_error(f"{self.name}: a whole pass produced no frame, not looping")
                return


class ImageDirectoryReplay(PacedReplay):
    """The image files of one folder, in sorted name order, at ``fps``."""

    def __init__(
        self,
        directory: str | Path,
        *,
        fps: float = 15.0,
        loop: bool = False,
        realtime: bool = True,
        origin: float | None = None,
        max_queue: int = DEFAULT_REPLAY_QUEUE,
        name: str | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        folder = Path(directory)
        if not folder.is_dir():
            raise ReplaySourceError(f"{folder}: not a directory")
        self.paths: list[Path] = sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not self.paths:
            raise ReplaySourceError(f"{folder}: no image files")
        super().__init__(
            name or f"dir:{folder.name}",
            fps=fps,
            loop=loop,
            realtime=realtime,
            origin=origin,
            max_queue=max_queue,
            clock=clock,
        )

    def _one_pass(self) -> Iterator[np.ndarray | None]:
        for path in self.paths:
            try:
                yield decode_image(path)
            except CartosError as exc:
                self._record_error(f"skipped unreadable image: {exc}")
                yield None


class VideoFileReplay(PacedReplay):
    """The frames of a video file at the file's own rate (or ``fps`` if given).

    The file is probed on construction so a wrong path fails at once, in the
    caller's thread, instead of as a silent empty replay.
    """

    FALLBACK_FPS = 15.0
    """Used when the container does not state a usable rate."""

    def __init__(
        self,
        path: str | Path,
        *,
        fps: float | None = None,
        loop: bool = False,
        realtime: bool = True,
        origin: float | None = None,
        max_queue: int = DEFAULT_REPLAY_QUEUE,
        name: str | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ReplaySourceError(f"{self.path}: no such video file")
        probe = cv2.VideoCapture(str(self.path))
        try:
            if not probe.isOpened():
                raise ReplaySourceError(f"{self.path}: cannot open as video")
            file_fps = float(probe.get(cv2.CAP_PROP_FPS))
            self.frame_count = int(probe.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            probe.release()
        if fps is None:
            fps = file_fps if 0 < file_fps < 1000 else self.FALLBACK_FPS
        super().__init__(
            name or f"video:{self.path.name}",
            fps=fps,
            loop=loop,
            realtime=realtime,
            origin=origin,
            max_queue=max_queue,
            clock=clock,
        )

    def _one_pass(self) -> Iterator[np.ndarray | None]:
        capture = cv2.VideoCapture(str(self.path))
        try:
            if not capture.isOpened():
                self._record_error(f"{self.path}: cannot open as video")
                return
            while not self._is_stopping:
                try:
                    ok, image = capture.read()
                except cv2.error as exc:
                    self._record_error(f"{self.path}: decode failed: {exc}")
                    return
                if not ok or image is None:
                    return
                yield image
        finally:
            capture.release()


ScenarioImage = str | Path | np.ndarray
"""A scenario frame: an image file (decoded when due) or a BGR/grey array."""


class ScenarioReplay(ThreadedSource):
    """Frames pushed by the caller with the scenario time each should appear at.

    The hardware-in-the-loop harness reads a scenario file and pushes
    ``(t, image)`` pairs, in time order, possibly while the source runs; it
    calls :meth:`finish` after the last one so readers see the end. Files are
    decoded when due, so an unreadable one is skipped and counted like any
    broken replay image; arrays are checked when pushed, since a wrong array is
    the harness's bug.
    """

    def __init__(
        self,
        *,
        realtime: bool = True,
        origin: float | None = None,
        max_queue: int = DEFAULT_REPLAY_QUEUE,
        name: str = "scenario",
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(name, max_queue=max_queue, backpressure=not realtime, clock=clock)
        self.realtime = realtime
        self._origin = origin
        self._inputs: deque[tuple[float, str | Path | np.ndarray]] = deque()
        self._inputs_cond = threading.Condition()
        self._last_pushed_t = float("-inf")
        self._finished_input = False

    @property
    def origin(self) -> float | None:
        """Host monotonic time of scenario time 0 (None until started, unless given)."""
        return self._origin

    def start(self) -> None:
        if self._origin is None:
            self._origin = self._clock()
        super().start()

    def push(self, t: float, image: ScenarioImage) -> None:
        """Schedule ``image`` at scenario time ``t`` (seconds; not before earlier pushes)."""
        item: str | Path | np.ndarray = image if isinstance(image, str | Path) else as_bgr(image)
        with self._inputs_cond:
            if self._finished_input:
                raise ScenarioOrderError("push after finish()")
            if t < self._last_pushed_t:
                raise ScenarioOrderError(
                    f"scenario frame at t={t} pushed after one at t={self._last_pushed_t}"
                )
            self._last_pushed_t = t
            self._inputs.append((float(t), item))
            self._inputs_cond.notify_all()

    def finish(self) -> None:
        """No more pushes: the source ends once every pushed frame was produced."""
        with self._inputs_cond:
            self._finished_input = True
            self._inputs_cond.notify_all()

    def _wake_producer(self) -> None:
        with self._inputs_cond:
            self._inputs_cond.notify_all()

    def _next_due(self) -> tuple[float, str | Path | np.ndarray] | None:
        """Wait for the next pushed frame and, in realtime, for its moment; None to end."""
        assert self._origin is not None
        with self._inputs_cond:
            while not self._is_stopping:
                if not self._inputs:
                    if self._finished_input:
                        return None
                    self._inputs_cond.wait(0.5)
                    continue
                t, _ = self._inputs[0]
                wait = self._origin + t - self._clock() if self.realtime else 0.0
                if wait <= 0:
                    return self._inputs.popleft()
                self._inputs_cond.wait(wait)
            return None

    def _run(self) -> None:
        assert self._origin is not None
        while (due := self._next_due()) is not None:
            t, item = due
            if isinstance(item, np.ndarray):
                image = item
            else:
                try:
                    image = decode_image(item)
                except CartosError as exc:
                    self._record_error(f"skipped unreadable scenario image: {exc}")
                    continue
            if not self._publish(image, self._origin + t, owned=True):
                return
