"""Simulated load cell, HX711 and barcode module for the emulated board.

The physics are simple but honest about what makes settle detection hard: a
placed item overshoots and rings, the load cell creeps under load, the zero
drifts with temperature, knocks and a rolling cart shake the basket, and the
ADC adds noise. Scenario scripts and tests drive it while the firmware reads
it through the same ``read()`` calls it makes on real hardware.
"""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from dataclasses import dataclass

ADC_MAX = (1 << 23) - 1
ADC_MIN = -(1 << 23)


@dataclass(frozen=True)
class LoadCellCalibration:
    """How grams become raw counts on this (emulated) cart: the truth the profile mirrors."""

    zero_counts: int = 84_000
    span_counts: int = 1_084_000
    span_grams: float = 10_000.0

    def counts(self, grams: float) -> int:
        per_gram = (self.span_counts - self.zero_counts) / self.span_grams
        return round(self.zero_counts + grams * per_gram)


@dataclass
class _Step:
    t0: float
    delta_g: float


@dataclass
class _Bump:
    t0: float
    duration: float
    amplitude_g: float


class WeightModel:
    """Weight on the load cell (grams) as a function of time (seconds, emulator clock)."""

    def __init__(
        self,
        seed: int = 0,
        noise_g: float = 0.4,
        creep_fraction: float = 0.0005,
        creep_tau_s: float = 90.0,
        ring_fraction: float = 0.25,
        ring_hz: float = 6.0,
        ring_tau_s: float = 0.12,
    ) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.noise_g = noise_g
        self.creep_fraction = creep_fraction
        self.creep_tau_s = creep_tau_s
        self.ring_fraction = ring_fraction
        self.ring_hz = ring_hz
        self.ring_tau_s = ring_tau_s
        self.base_g = 0.0
        self.drift_g_per_min = 0.0
        self._steps: deque[_Step] = deque(maxlen=64)
        self._bumps: deque[_Bump] = deque(maxlen=64)
        self._rolling_amp_g = 0.0
        self._rolling_since = 0.0
        self._phases = [self._rng.uniform(0, 2 * math.pi) for _ in range(4)]

    def place(self, t: float, delta_g: float) -> None:
        """An item of ``delta_g`` grams lands (negative: one is lifted out)."""
        with self._lock:
            self.base_g += delta_g
            self._steps.append(_Step(t, delta_g))

    def set_total(self, t: float, grams: float) -> None:
        self.place(t, grams - self.base_g)

    def bump(self, t: float, amplitude_g: float, duration_s: float = 0.15) -> None:
        with self._lock:
            self._bumps.append(_Bump(t, duration_s, amplitude_g))

    def rolling(self, t: float, amplitude_g: float) -> None:
        """Start (amplitude > 0) or stop (0) the vibration of a cart being pushed."""
        with self._lock:
            self._rolling_amp_g = amplitude_g
            self._rolling_since = t

    def grams(self, t: float) -> float:
        with self._lock:
            g = self.base_g + self.drift_g_per_min * t / 60.0
            for s in self._steps:
                dt = t - s.t0
                if dt < 0:
                    continue
                g += self.creep_fraction * s.delta_g * (1.0 - math.exp(-dt / self.creep_tau_s))
                if dt < 8 * self.ring_tau_s:
                    decay = math.exp(-dt / self.ring_tau_s)
                    g += self.ring_fraction * s.delta_g * decay * math.sin(
                        2 * math.pi * self.ring_hz * dt
                    )
                    if dt < 0.05:  # the item is still landing: weight ramps in
                        g -= s.delta_g * (1.0 - dt / 0.05)
            for b in self._bumps:
                dt = t - b.t0
                if 0 <= dt < b.duration:
                    g += b.amplitude_g * math.sin(math.pi * dt / b.duration)
            if self._rolling_amp_g:
                a = self._rolling_amp_g
                dt = t - self._rolling_since
                g += a * 0.5 * math.sin(2 * math.pi * 11.0 * dt + self._phases[0])
                g += a * 0.3 * math.sin(2 * math.pi * 23.0 * dt + self._phases[1])
                g += a * 0.2 * math.sin(2 * math.pi * 3.1 * dt + self._phases[2])
                if (dt % 1.0) < 0.04:  # a floor joint every second
                    g += 2.0 * a
            return g + self._rng.gauss(0.0, self.noise_g)


class FakeHx711:
    """The HX711 as the firmware sees it: a conversion ready at the output rate, or None."""

    def __init__(
        self,
        model: WeightModel,
        calibration: LoadCellCalibration,
        clock: object,
        rate_hz: float = 80.0,
    ) -> None:
        self.model = model
        self.calibration = calibration
        self._clock = clock
        self.rate_hz = rate_hz
        self._next_t = 0.0
        self.disconnected = False
        self.readings = 0

    def read(self) -> int | None:
        t = self._clock()  # type: ignore[operator]
        if self.disconnected or t < self._next_t:
            return None
        self._next_t = max(self._next_t + 1.0 / self.rate_hz, t - 1.0)
        self.readings += 1
        counts = self.calibration.counts(self.model.grams(t))
        return int(min(ADC_MAX, max(ADC_MIN, counts)))


class FakeScanner:
    """A UART barcode module: queued codes come out one per read."""

    def __init__(self) -> None:
        self._codes: deque[bytes] = deque()
        self._lock = threading.Lock()

    def scan(self, code: str | bytes) -> None:
        with self._lock:
            self._codes.append(code.encode() if isinstance(code, str) else code)

    def read_code(self) -> bytes | None:
        with self._lock:
            return self._codes.popleft() if self._codes else None
