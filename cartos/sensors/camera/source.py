"""The frame-source interface and the background-thread machinery behind it.

The runtime's loop must never block on a camera: a USB camera stalls for
seconds when it is unplugged, an RTSP stream when the network hiccups. So every
source grabs on its own thread into a small queue, and the loop only ever waits
as long as the ``timeout`` it passes to :meth:`FrameSource.read`. Live cameras
and the replay sources used on the bench and in tests share this one interface,
so everything downstream is tested against exactly what runs on the cart.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import numpy as np

from cartos.sensors.camera.errors import SourceStateError
from cartos.sensors.camera.frame import Frame, as_bgr

log = logging.getLogger(__name__)

Clock = Callable[[], float]
"""A monotonic seconds clock; ``time.monotonic`` unless a test injects its own."""


@dataclass(frozen=True)
class SourceStats:
    """A snapshot of a source's counters, safe to read from any thread.

    ``frames`` were produced; ``drops`` were discarded because the consumer fell
    behind (the queue was full); ``reconnects`` count times a lost device was
    reopened; ``errors`` count failed opens, failed reads and unreadable replay
    images; ``last_error`` describes the most recent one.
    """

    frames: int = 0
    drops: int = 0
    reconnects: int = 0
    errors: int = 0
    last_error: str | None = None


class FrameSource(ABC):
    """Anything that delivers timestamped frames: a camera or a replay.

    A source is single-use: ``start()`` once, read, ``stop()`` once. It is a
    context manager (``with source:`` starts and stops it) and all methods are
    safe to call from any thread.
    """

    name: str

    @abstractmethod
    def start(self) -> None:
        """Begin producing frames in the background; returns at once."""

    @abstractmethod
    def read(self, timeout: float) -> Frame | None:
        """Next frame not yet read, waiting at most ``timeout`` seconds.

        None means nothing arrived in time, or the source is exhausted (a replay
        that ran out, see :attr:`exhausted`).
        """

    @abstractmethod
    def latest(self) -> Frame | None:
        """The most recent frame produced, read or not (None before the first)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop producing and join the background thread; later reads return None."""

    @property
    @abstractmethod
    def stats(self) -> SourceStats:
        """Counters so far."""

    @property
    @abstractmethod
    def exhausted(self) -> bool:
        """True once no frame will ever be returned again (ended and drained)."""

    def frames(self, idle_timeout: float = 5.0) -> Iterator[Frame]:
        """Yield frames until the source is exhausted or stays silent ``idle_timeout`` s."""
        while True:
            frame = self.read(idle_timeout)
            if frame is None:
                return
            yield frame

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ThreadedSource(FrameSource):
    """A source whose frames come from :meth:`_run` on a daemon thread.

    Subclasses implement ``_run`` with :meth:`_publish`, :meth:`_sleep` and
    :meth:`_record_error`; this class owns the queue, the counters and the
    thread's lifecycle. With ``backpressure`` the producer waits for the
    consumer when the queue is full (lossless file replay); without it the
    oldest queued frame is dropped and counted, as a live camera must.
    """

    def __init__(
        self,
        name: str,
        *,
        max_queue: int = 8,
        backpressure: bool = False,
        clock: Clock = time.monotonic,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        self.name = name
        self._clock = clock
        self._max_queue = max_queue
        self._backpressure = backpressure
        self._cond = threading.Condition()
        self._queue: deque[Frame] = deque()
        self._latest: Frame | None = None
        self._next_seq = 0
        self._frames = 0
        self._drops = 0
        self._reconnects = 0
        self._errors = 0
        self._last_error: str | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._ended = False
        self._state = "new"

    # -- consumer side -------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            if self._state != "new":
                raise SourceStateError(f"source {self.name!r} was already started")
            self._state = "running"
            self._thread = threading.Thread(
                target=self._thread_main, name=f"camera-{self.name}", daemon=True
            )
        self._thread.start()

    def read(self, timeout: float) -> Frame | None:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            if self._state == "new":
                raise SourceStateError(f"source {self.name!r} read before start()")
            while not self._queue:
                if self._ended or self._stopping.is_set():
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            frame = self._queue.popleft()
            self._cond.notify_all()
            return frame

    def latest(self) -> Frame | None:
        with self._cond:
            return self._latest

    def stop(self, join_timeout: float = 5.0) -> None:
        """Stop the thread, drop unread frames, and wait up to ``join_timeout`` s for it.

        A driver call stuck inside OpenCV cannot be interrupted; after the
        timeout the daemon thread is abandoned with a warning rather than
        hanging the runtime's shutdown.
        """
        self._stopping.set()
        self._wake_producer()
        with self._cond:
            self._state = "stopped"
            self._queue.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(join_timeout)
            if thread.is_alive():
                log.warning("camera source %r did not stop within %.1fs", self.name, join_timeout)

    @property
    def stats(self) -> SourceStats:
        with self._cond:
            return SourceStats(
                frames=self._frames,
                drops=self._drops,
                reconnects=self._reconnects,
                errors=self._errors,
                last_error=self._last_error,
            )

    @property
    def exhausted(self) -> bool:
        with self._cond:
            return (self._ended or self._stopping.is_set()) and not self._queue

    # -- producer side (subclasses) -----------------------------------------

    @abstractmethod
    def _run(self) -> None:
        """Produce frames until done or :attr:`_stopping` is set; runs on the thread."""

    def _wake_producer(self) -> None:
        """Interrupt the producer's own waits on stop; override if it waits elsewhere."""

    def _publish(self, image: np.ndarray, t: float, *, owned: bool = False) -> bool:
        """Queue a frame; returns False when the source is stopping (producer should exit).

        ``owned`` says the array is fresh and nobody else holds it, so it is
        frozen in place instead of copied.
        """
        bgr = as_bgr(image, copy=not owned)
        with self._cond:
            if self._backpressure:
                while len(self._queue) >= self._max_queue and not self._stopping.is_set():
                    self._cond.wait(0.5)
            if self._stopping.is_set():
                return False
            frame = Frame(image=bgr, t=t, seq=self._next_seq, source=self.name)
            self._next_seq += 1
            if len(self._queue) >= self._max_queue:
                self._queue.popleft()
                self._drops += 1
            self._queue.append(frame)
            self._latest = frame
            self._frames += 1
            self._cond.notify_all()
        return True

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` unless stopped first; returns False when stopping."""
        if seconds > 0:
            return not self._stopping.wait(seconds)
        return not self._stopping.is_set()

    def _record_error(self, message: str) -> None:
        log.warning("camera source %r: %s", self.name, message)
        with self._cond:
            self._errors += 1
            self._last_error = message

    def _record_reconnect(self) -> None:
        with self._cond:
            self._reconnects += 1

    @property
    def _is_stopping(self) -> bool:
        return self._stopping.is_set()

    def _thread_main(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a bug in a producer must not die silently
            log.exception("camera source %r failed", self.name)
            self._record_error(f"producer failed: {exc!r}")
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()
