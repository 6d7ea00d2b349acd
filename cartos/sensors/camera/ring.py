"""A time-indexed ring buffer of recent frames.

A weight event says *when* something happened; the crop must come from the
frames around that moment, which by then are a second or more in the past. So
the runtime keeps the last few seconds of frames here and asks by time. The
buffer is bounded by frame count and/or bytes because the cart's computer has
little memory and a 1080p frame is 6 MB: the bound, not the camera rate,
decides how far back one can look.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator

from cartos.sensors.camera.errors import RingCapacityError
from cartos.sensors.camera.frame import Frame


class FrameRing:
    """Recent frames kept in time order, oldest evicted first; thread-safe.

    Frames normally arrive in time order; one that does not is inserted at its
    place, so every query sees a sorted history. Time queries split the history
    at ``t``: :meth:`before` covers frames with ``frame.t <= t`` and
    :meth:`after` those with ``frame.t > t``, so each frame belongs to exactly
    one side of any instant.
    """

    def __init__(self, max_frames: int | None = 90, max_bytes: int | None = None) -> None:
        if max_frames is None and max_bytes is None:
            raise ValueError("a frame ring needs max_frames, max_bytes or both")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, got {max_frames}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._frames: list[Frame] = []
        self._times: list[float] = []
        self._nbytes = 0

    def push(self, frame: Frame) -> None:
        """Add ``frame``, evicting the oldest frames beyond the bounds."""
        if self.max_bytes is not None and frame.nbytes > self.max_bytes:
            raise RingCapacityError(
                f"a {frame.nbytes}-byte frame cannot fit a {self.max_bytes}-byte ring"
            )
        with self._lock:
            if not self._times or frame.t >= self._times[-1]:
                index = len(self._times)
            else:
                index = bisect.bisect_right(self._times, frame.t)
            self._times.insert(index, frame.t)
            self._frames.insert(index, frame)
            self._nbytes += frame.nbytes
            self._evict()

    def _evict(self) -> None:
        excess = 0
        if self.max_frames is not None:
            excess = max(0, len(self._frames) - self.max_frames)
        nbytes = self._nbytes - sum(f.nbytes for f in self._frames[:excess])
        if self.max_bytes is not None:
            while nbytes > self.max_bytes:
                nbytes -= self._frames[excess].nbytes
                excess += 1
        if excess:
            del self._frames[:excess]
            del self._times[:excess]
            self._nbytes = nbytes

    def nearest(self, t: float) -> Frame | None:
        """The frame closest in time to ``t`` (the earlier one on a tie); None if empty."""
        with self._lock:
            if not self._frames:
                return None
            i = bisect.bisect_left(self._times, t)
            if i == 0:
                return self._frames[0]
            if i == len(self._times):
                return self._frames[-1]
            before, after = self._times[i - 1], self._times[i]
            return self._frames[i - 1] if t - before <= after - t else self._frames[i]

    def between(self, t0: float, t1: float) -> list[Frame]:
        """Frames with ``t0 <= frame.t <= t1``, oldest first."""
        with self._lock:
            lo = bisect.bisect_left(self._times, t0)
            hi = bisect.bisect_right(self._times, t1)
            return self._frames[lo:hi]

    def before(self, t: float, n: int = 1) -> list[Frame]:
        """The last ``n`` frames with ``frame.t <= t``, oldest first."""
        if n <= 0:
            return []
        with self._lock:
            hi = bisect.bisect_right(self._times, t)
            return self._frames[max(0, hi - n) : hi]

    def after(self, t: float, n: int = 1) -> list[Frame]:
        """The first ``n`` frames with ``frame.t > t``, oldest first."""
        if n <= 0:
            return []
        with self._lock:
            lo = bisect.bisect_right(self._times, t)
            return self._frames[lo : lo + n]

    def latest(self) -> Frame | None:
        with self._lock:
            return self._frames[-1] if self._frames else None

    def oldest(self) -> Frame | None:
        with self._lock:
            return self._frames[0] if self._frames else None

    def snapshot(self) -> list[Frame]:
        """All frames, oldest first (a copy: later pushes do not change it)."""
        with self._lock:
            return list(self._frames)

    @property
    def nbytes(self) -> int:
        """Image bytes currently held."""
        with self._lock:
            return self._nbytes

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()
            self._times.clear()
            self._nbytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    def __iter__(self) -> Iterator[Frame]:
        return iter(self.snapshot())
