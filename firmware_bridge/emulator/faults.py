"""Line faults the emulator can inject: what a noisy cart harness does to a serial link.

Faults apply to bytes in flight, in either direction, so the host's framing,
retransmission and event deduplication are tested by the real code paths. A
ground-truth log of every value the emulated board sent lets a benchmark count
corrupt readings that slipped through.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field


@dataclass
class FaultStats:
    """What was done to the line, for benchmarks and test assertions."""

    bits_flipped: int = 0
    garbage_bytes: int = 0
    writes_dropped: int = 0
    stalls: int = 0


@dataclass
class LineFaults:
    """Fault settings for one direction of the link; change them at any time.

    ``ber`` flips each bit independently with that probability; ``drop_rate``
    loses whole writes (a frame or a burst); ``garbage(n)`` queues n random
    bytes before the next write; ``stall(s)`` holds the direction for s seconds.
    """

    ber: float = 0.0
    drop_rate: float = 0.0
    seed: int = 0
    stats: FaultStats = field(default_factory=FaultStats)
    _garbage: int = 0
    _stall_until: float = 0.0
    _rng: random.Random = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def garbage(self, nbytes: int) -> None:
        with self._lock:
            self._garbage += nbytes

    def stall(self, seconds: float) -> None:
        with self._lock:
            self._stall_until = max(self._stall_until, time.monotonic() + seconds)
            self.stats.stalls += 1

    def stalled(self) -> bool:
        return time.monotonic() < self._stall_until

    def apply(self, data: bytes) -> bytes:
        """Return what actually goes on the wire for ``data``."""
        with self._lock:
            rng = self._rng
            if self.drop_rate and rng.random() < self.drop_rate:
                self.stats.writes_dropped += 1
                return b""
            out = bytearray()
            if self._garbage:
                out.extend(rng.randbytes(self._garbage))
                self.stats.garbage_bytes += self._garbage
                self._garbage = 0
            start = len(out)
            out.extend(data)
            if self.ber > 0.0:
                self._flip_bits(out, start, rng)
            return bytes(out)

    def _flip_bits(self, buf: bytearray, start: int, rng: random.Random) -> None:
        # Geometric gaps between flipped bits: exact Bernoulli(ber) per bit,
        # without drawing a random number for every bit.
        nbits = (len(buf) - start) * 8
        pos = _next_gap(rng, self.ber)
        while pos < nbits:
            byte, bit = divmod(pos, 8)
            buf[start + byte] ^= 1 << bit
            self.stats.bits_flipped += 1
            pos += 1 + _next_gap(rng, self.ber)


def _next_gap(rng: random.Random, p: float) -> int:
    import math

    u = rng.random()
    return int(math.log1p(-u) / math.log1p(-p)) if u > 0.0 else 0
