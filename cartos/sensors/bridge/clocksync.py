"""Map the microcontroller's clock onto the host's monotonic clock.

Weight events carry MCU timestamps; camera frames carry host timestamps. To
line a settled weight up with the frames around it, the host asks for the MCU
clock periodically and fits ``host = offset + rate * mcu`` over recent round
trips, trusting the fastest ones most (their midpoint is the tightest bound,
the same idea NTP and Klipper's clock sync use). The MCU clock is a 32-bit
microsecond counter; it is unwrapped here to an unbounded count.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

WRAP = 1 << 32
HALF = 1 << 31


@dataclass(frozen=True)
class ClockSample:
    host_sent: float
    host_received: float
    mcu_us: int  # unwrapped

    @property
    def rtt(self) -> float:
        return self.host_received - self.host_sent

    @property
    def host_mid(self) -> float:
        return (self.host_sent + self.host_received) / 2.0


class ClockSync:
    """Least-squares clock fit over the fastest recent round trips."""

    def __init__(self, clock_freq: float = 1_000_000.0, history: int = 32) -> None:
        self.freq = clock_freq
        self._samples: deque[ClockSample] = deque(maxlen=history)
        self._last_unwrapped: int | None = None
        self.offset = 0.0  # host seconds at mcu time 0
        self.rate = 1.0  # host seconds per mcu second

    @property
    def synced(self) -> bool:
        return bool(self._samples)

    def reset(self) -> None:
        """Forget everything (the MCU rebooted: its clock restarted)."""
        self._samples.clear()
        self._last_unwrapped = None
        self.offset, self.rate = 0.0, 1.0

    def unwrap(self, clock32: int) -> int:
        """Extend a 32-bit MCU clock reading near the last one seen (±35 minutes)."""
        if self._last_unwrapped is None:
            self._last_unwrapped = clock32
            return clock32
        delta = (clock32 - self._last_unwrapped) % WRAP
        if delta >= HALF:
            delta -= WRAP
        return self._last_unwrapped + delta

    def add(self, host_sent: float, host_received: float, clock32: int) -> None:
        unwrapped = self.unwrap(clock32)
        self._last_unwrapped = max(self._last_unwrapped or unwrapped, unwrapped)
        self._samples.append(ClockSample(host_sent, host_received, unwrapped))
        self._fit()

    def _fit(self) -> None:
        samples = sorted(self._samples, key=lambda s: s.rtt)
        best = samples[: max(2, len(samples) // 2)]
        if len(best) < 2 or max(s.mcu_us for s in best) - min(s.mcu_us for s in best) < self.freq:
            # Too short a baseline to fit a rate: offset only, from the fastest round trip.
            s = samples[0]
            self.rate = 1.0
            self.offset = s.host_mid - s.mcu_us / self.freq
            return
        xs = [s.mcu_us / self.freq for s in best]
        ys = [s.host_mid for s in best]
        mx = sum(xs) / len(xs)
        my = sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
        rate = sxy / sxx if sxx > 0 else 1.0
        if not 0.99 < rate < 1.01:  # a crystal is never 1 % off: a bad sample, not drift
            rate = 1.0
        self.rate = rate
        self.offset = my - rate * mx

    def to_host(self, clock32: int) -> float:
        """Host monotonic seconds for an MCU timestamp."""
        return self.offset + self.rate * self.unwrap(clock32) / self.freq

    @property
    def best_rtt(self) -> float | None:
        return min((s.rtt for s in self._samples), default=None)
