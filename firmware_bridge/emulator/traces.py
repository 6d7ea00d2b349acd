"""Recorded-style load-cell traces with ground truth, for benchmarking settle detection.

Settle detection is judged on what makes it hard on a real cart, so each
artefact here is modelled on what a basket on load cells actually shows: the
hand lowers an item over a few hundred milliseconds (or drops it, with a hard
overshoot) and the basket rings at its natural frequency; the load cell creeps
towards the new load for minutes; the zero drifts with temperature; the HX711
adds white and 1/f noise; a knock adds a short impulse of hundreds of grams;
a hand resting on the basket adds a load that sways and trembles; a rolling
cart adds band-limited vibration with a spike at every floor joint. Every
trace carries its ground truth (the real load changes) so a benchmark can
score misses, wrong deltas and phantom events.

Host only (numpy). Deterministic: the same seed and the same calls give the
same trace, sample for sample.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from firmware_bridge.scale import ADC_MAX, ADC_MIN, Calibration

DEFAULT_RATE_HZ = 80.0

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Placement:
    """A real load change: ``delta_mg`` > 0 put in, < 0 taken out.

    ``t_ms`` is the moment the change is complete: the hand let go of the
    item (placement) or lifted it clear (removal).
    """

    t_ms: int
    delta_mg: int


@dataclass(frozen=True)
class Disturbance:
    """Something that moves the reading without changing the load (for diagnostics)."""

    kind: str  # "bump", "hand", "rolling"
    t_ms: int
    duration_ms: int


@dataclass(frozen=True)
class Trace:
    """Samples in grams at ``t_ms`` with the truth behind them.

    ``connected`` is False where the ADC gave no conversion (wire pulled).
    """

    rate_hz: float
    t_ms: IntArray
    grams: FloatArray
    connected: BoolArray
    placements: tuple[Placement, ...]
    disturbances: tuple[Disturbance, ...]

    def samples(self, calibration: Calibration) -> Iterator[tuple[int | None, int]]:
        """``(counts or None, t_ms)`` in order: exactly what ``Scale.update`` takes."""
        raw = counts(self.grams, calibration)
        for c, t, ok in zip(raw.tolist(), self.t_ms.tolist(), self.connected.tolist(), strict=True):
            yield (c if ok else None), t


def counts(trace_g: FloatArray, calibration: Calibration) -> IntArray:
    """Grams to raw signed HX711 counts through ``calibration``, saturating like the ADC."""
    per_mg = (calibration.span_counts - calibration.zero_counts) / (
        calibration.span_mg - calibration.zero_mg
    )
    raw = (
        calibration.zero_counts
        + (np.asarray(trace_g, np.float64) * 1000.0 - calibration.zero_mg) * per_mg
    )
    return np.clip(np.rint(raw), ADC_MIN, ADC_MAX).astype(np.int64)


def _band_noise(
    rng: np.random.Generator, n: int, rate_hz: float, lo: float, hi: float
) -> FloatArray:
    """Unit-variance Gaussian noise limited to ``lo``..``hi`` Hz (FFT masking)."""
    if n < 4:
        return np.zeros(n)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / rate_hz)
    spectrum[(freqs < lo) | (freqs > hi)] = 0.0
    out = np.fft.irfft(spectrum, n)
    std = float(out.std())
    return out / std if std > 0 else out


def _flicker_noise(rng: np.random.Generator, n: int, rate_hz: float) -> FloatArray:
    """Unit-variance 1/f ("pink") noise down to 0.01 Hz, as a bridge amplifier shows."""
    if n < 4:
        return np.zeros(n)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / rate_hz)
    spectrum *= 1.0 / np.sqrt(np.maximum(freqs, 0.01))
    spectrum[0] = 0.0
    out = np.fft.irfft(spectrum, n)
    std = float(out.std())
    return out / std if std > 0 else out


def _smoothstep(x: FloatArray) -> FloatArray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


class TraceBuilder:
    """Compose one trace: schedule load changes and disturbances, then :meth:`build`.

    Times are seconds from the start of the trace; ``start_ms`` offsets the
    sample clock so consecutive traces can continue one clock (long soaks are
    built in chunks). Unspecified shapes (ramp time, ringing, tremor) are drawn
    from the builder's seeded generator at the time of the call.
    """

    def __init__(
        self,
        duration_s: float,
        seed: int,
        rate_hz: float = DEFAULT_RATE_HZ,
        start_ms: int = 0,
        initial_load_g: float = 0.0,
        noise_g: float = 0.35,
        flicker_g: float = 0.15,
        creep_fraction: float = 0.0005,
        creep_tau_s: float = 60.0,
        drift_g_per_hour: float = 0.0,
        drift_phase: float = 0.0,
    ) -> None:
        self.rate_hz = rate_hz
        self.start_ms = start_ms
        self.rng = np.random.default_rng(seed)
        n = max(1, round(duration_s * rate_hz))
        self.t = np.arange(n, dtype=np.float64) / rate_hz  # seconds since the trace start
        self.t_ms: IntArray = start_ms + np.rint(self.t * 1000.0).astype(np.int64)
        self.creep_fraction = creep_fraction
        self.creep_tau_s = creep_tau_s
        self.load = np.full(n, float(initial_load_g))  # true load on the cells (grams)
        self.extra = np.zeros(n)  # everything that is not load: ringing, knocks, vibration
        self.connected: BoolArray = np.ones(n, dtype=np.bool_)
        self.placements: list[Placement] = []
        self.disturbances: list[Disturbance] = []
        self._noise_g = noise_g
        self._flicker_g = flicker_g
        self._drift_g_per_hour = drift_g_per_hour
        self._drift_phase = drift_phase

    # -- helpers ------------------------------------------------------------

    def _index(self, t_s: float) -> int:
        return int(np.clip(round(t_s * self.rate_hz), 0, len(self.t)))

    def _abs_ms(self, t_s: float) -> int:
        return self.start_ms + round(t_s * 1000.0)

    def _ring(self, t0_s: float, amplitude_g: float, freq_hz: float, tau_s: float) -> None:
        """Damped oscillation of the basket starting at ``t0_s`` (sine: starts at zero)."""
        i0 = self._index(t0_s)
        i1 = self._index(t0_s + 8.0 * tau_s)
        dt = self.t[i0:i1] - t0_s
        self.extra[i0:i1] += amplitude_g * np.exp(-dt / tau_s) * np.sin(2 * math.pi * freq_hz * dt)

    def _step(self, t0_s: float, t1_s: float, delta_g: float) -> None:
        """Load moves by ``delta_g`` over ``t0_s``..``t1_s`` (smooth), then creeps."""
        ramp = _smoothstep((self.t - t0_s) / max(t1_s - t0_s, 1e-6))
        self.load += delta_g * ramp
        after = self.t >= t1_s
        dt = self.t[after] - t1_s
        self.load[after] += self.creep_fraction * delta_g * (1.0 - np.exp(-dt / self.creep_tau_s))

    # -- load changes -------------------------------------------------------

    def place(self, t_s: float, grams: float, drop: bool | None = None) -> TraceBuilder:
        """An item of ``grams`` put in; ``t_s`` is when the hand lets go.

        Lowered by hand (100-400 ms ramp, mild ringing) or, with ``drop``
        (default: one placement in four), dropped from a few centimetres: a
        30 ms impact and an overshoot of 50-120 % of its weight.
        """
        rng = self.rng
        if drop is None:
            drop = bool(rng.random() < 0.25)
        ramp_s = 0.03 if drop else float(rng.uniform(0.1, 0.4))
        ring = float(rng.uniform(0.5, 1.2) if drop else rng.uniform(0.05, 0.3))
        self._step(t_s - ramp_s, t_s, grams)
        self._ring(t_s, ring * grams, float(rng.uniform(5.0, 10.0)), float(rng.uniform(0.08, 0.25)))
        self.placements.append(Placement(self._abs_ms(t_s), round(grams * 1000.0)))
        return self

    def remove(self, t_s: float, grams: float) -> TraceBuilder:
        """An item of ``grams`` taken out; ``t_s`` is when it is lifted clear.

        The hand grips first (pressing down by up to 10 % of the item for
        ~200 ms), lifts over 200-500 ms, and the basket rings a little.
        """
        rng = self.rng
        lift_s = float(rng.uniform(0.2, 0.5))
        grip_s = float(rng.uniform(0.1, 0.3))
        press = float(rng.uniform(0.0, 0.1)) * grams
        t_grip = t_s - lift_s - grip_s
        i0, i1 = self._index(t_grip), self._index(t_s - lift_s)
        if i1 > i0:
            self.extra[i0:i1] += press * np.sin(np.linspace(0.0, math.pi, i1 - i0))
        self._step(t_s - lift_s, t_s, -grams)
        ring = float(rng.uniform(0.03, 0.15))
        self._ring(
            t_s, -ring * grams, float(rng.uniform(5.0, 10.0)), float(rng.uniform(0.08, 0.25))
        )
        self.placements.append(Placement(self._abs_ms(t_s), -round(grams * 1000.0)))
        return self

    # -- disturbances (load unchanged) --------------------------------------

    def bump(
        self, t_s: float, amplitude_g: float | None = None, duration_s: float | None = None
    ) -> TraceBuilder:
        """A knock: a half-sine push of ``amplitude_g`` (100-800 g) for 50-300 ms, then ringing."""
        rng = self.rng
        amp = (
            float(rng.uniform(100.0, 800.0) * rng.choice([-1.0, 1.0]))
            if amplitude_g is None
            else amplitude_g
        )
        dur = float(rng.uniform(0.05, 0.3)) if duration_s is None else duration_s
        i0, i1 = self._index(t_s), self._index(t_s + dur)
        if i1 > i0:
            self.extra[i0:i1] += amp * np.sin(math.pi * (self.t[i0:i1] - t_s) / dur)
        self._ring(
            t_s + dur, 0.3 * amp, float(rng.uniform(6.0, 15.0)), float(rng.uniform(0.05, 0.15))
        )
        self.disturbances.append(Disturbance("bump", self._abs_ms(t_s), round(dur * 1000)))
        return self

    def hand_rest(
        self, t_s: float, grams: float | None = None, duration_s: float | None = None
    ) -> TraceBuilder:
        """A hand resting on the basket rim: ``grams`` (100-1000 g) for 0.3-3 s.

        A resting hand is never still: physiological tremor (8-12 Hz, 1-6 g)
        and slow sway (0.3-2 Hz, 2-12 g) ride on the pressure.
        """
        rng = self.rng
        force = float(rng.uniform(100.0, 1000.0)) if grams is None else grams
        dur = float(rng.uniform(0.3, 3.0)) if duration_s is None else duration_s
        i0, i1 = self._index(t_s), self._index(t_s + dur)
        if i1 - i0 >= 4:
            x = (self.t[i0:i1] - t_s) / dur
            edge = min(0.15, dur / 4)
            envelope = _smoothstep(x * dur / edge) * _smoothstep((1.0 - x) * dur / edge)
            tremor = float(rng.uniform(1.0, 6.0)) * _band_noise(
                rng, i1 - i0, self.rate_hz, 8.0, 12.0
            )
            sway = float(rng.uniform(2.0, 12.0)) * _band_noise(rng, i1 - i0, self.rate_hz, 0.3, 2.0)
            self.extra[i0:i1] += envelope * (force + tremor + sway)
            self._ring(t_s, 0.1 * force, float(rng.uniform(5.0, 10.0)), 0.1)
        self.disturbances.append(Disturbance("hand", self._abs_ms(t_s), round(dur * 1000)))
        return self

    def roll(self, t0_s: float, t1_s: float, amplitude_g: float | None = None) -> TraceBuilder:
        """The cart is pushed from ``t0_s`` to ``t1_s``.

        Band-limited vibration (4-25 Hz) peaking at about ±``amplitude_g``
        (10-80 g), faded in and out over 0.5 s, plus a floor joint every
        0.8-1.2 s: a sharp jolt of 1-3x the vibration amplitude that rings out.
        """
        rng = self.rng
        amp = float(rng.uniform(10.0, 80.0)) if amplitude_g is None else amplitude_g
        i0, i1 = self._index(t0_s), self._index(t1_s)
        if i1 - i0 >= 4:
            seg = self.t[i0:i1]
            fade = _smoothstep((seg - t0_s) / 0.5) * _smoothstep((t1_s - seg) / 0.5)
            self.extra[i0:i1] += (
                fade * (amp / 3.0) * _band_noise(rng, i1 - i0, self.rate_hz, 4.0, 25.0)
            )
            joint = t0_s + float(rng.uniform(0.2, 1.0))
            while joint < t1_s - 0.2:
                jolt = amp * float(rng.uniform(1.0, 3.0)) * float(rng.choice([-1.0, 1.0]))
                self._ring(
                    joint, jolt, float(rng.uniform(8.0, 15.0)), float(rng.uniform(0.04, 0.1))
                )
                joint += float(rng.uniform(0.8, 1.2))
        self.disturbances.append(
            Disturbance("rolling", self._abs_ms(t0_s), round((t1_s - t0_s) * 1000))
        )
        return self

    def disconnect(self, t0_s: float, t1_s: float) -> TraceBuilder:
        """No conversions from ``t0_s`` to ``t1_s`` (a pulled connector)."""
        self.connected[self._index(t0_s) : self._index(t1_s)] = False
        return self

    # -- result -------------------------------------------------------------

    def build(self) -> Trace:
        """Load + disturbances + temperature drift + ADC noise, with the truth attached."""
        n = len(self.t)
        rng = self.rng
        hours = (self.t_ms.astype(np.float64)) / 3_600_000.0
        # Zero drift: a steady slope plus a slow wander (heating and air flow), a
        # function of the absolute clock so chunks built with the same drift join up.
        drift = self._drift_g_per_hour * (
            hours + 0.3 * np.sin(2 * math.pi * hours * 3.0 + self._drift_phase)
        )
        noise = self._noise_g * rng.standard_normal(n) + self._flicker_g * _flicker_noise(
            rng, n, self.rate_hz
        )
        grams = self.load + self.extra + drift + noise
        return Trace(
            rate_hz=self.rate_hz,
            t_ms=self.t_ms,
            grams=grams,
            connected=self.connected.copy(),
            placements=tuple(sorted(self.placements, key=lambda p: p.t_ms)),
            disturbances=tuple(sorted(self.disturbances, key=lambda d: d.t_ms)),
        )


# -- ready-made scenarios ---------------------------------------------------------


def placement_trace(
    seed: int,
    grams: float,
    removal: bool = False,
    rolling: bool = False,
    rate_hz: float = DEFAULT_RATE_HZ,
) -> tuple[Trace, int]:
    """One item put in (or taken out) of a basket already holding 0-4 kg.

    With ``rolling`` the cart is being pushed while it happens and stops
    0.5-4 s later. Returns the trace and the time (ms, trace clock) from which
    the basket is quiet again: the cart stopped, or the change itself when
    the cart stands still.
    """
    rng = np.random.default_rng([seed, 7])
    load = float(rng.uniform(0.0, 4000.0)) + (grams if removal else 0.0)
    t_change = float(rng.uniform(4.0, 6.0))
    quiet_from = t_change
    builder = TraceBuilder(
        duration_s=t_change + 14.0,
        seed=seed,
        rate_hz=rate_hz,
        initial_load_g=load,
        drift_g_per_hour=float(rng.uniform(-3.0, 3.0)),
    )
    if rolling:
        quiet_from = t_change + float(rng.uniform(0.5, 4.0))
        builder.roll(t_change - float(rng.uniform(1.0, 3.0)), quiet_from)
    if removal:
        builder.remove(t_change, grams)
    else:
        builder.place(t_change, grams)
    return builder.build(), builder.start_ms + round(quiet_from * 1000.0)


def shopping_without_changes(
    seed: int,
    duration_s: float,
    start_ms: int = 0,
    load_g: float = 2500.0,
    rate_hz: float = DEFAULT_RATE_HZ,
    rolling_share: float = 0.5,
    bumps_per_min: float = 3.0,
    hand_rests_per_min: float = 1.0,
    drift_g_per_hour: float | None = None,
) -> Trace:
    """A cart being shopped with but never loaded: the phantom-event soak.

    Rolling segments of 5-60 s cover about ``rolling_share`` of the time;
    knocks and resting hands arrive as Poisson processes (also while
    rolling); the zero drifts by ``drift_g_per_hour`` (default: drawn from
    ±3 g/h; pass the same value to every chunk of a long soak so the drift
    joins up). There are no placements, so every ``Settled`` change a scale
    reports on it is false.
    """
    rng = np.random.default_rng([seed, 11])
    builder = TraceBuilder(
        duration_s=duration_s,
        seed=seed,
        rate_hz=rate_hz,
        start_ms=start_ms,
        initial_load_g=load_g,
        drift_g_per_hour=float(rng.uniform(-3.0, 3.0))
        if drift_g_per_hour is None
        else drift_g_per_hour,
    )
    t = float(rng.uniform(0.0, 10.0))
    while t < duration_s:
        length = float(rng.uniform(5.0, 60.0))
        if rng.random() < rolling_share:
            builder.roll(t, min(t + length, duration_s))
        t += length
    for rate, add in ((bumps_per_min, builder.bump), (hand_rests_per_min, builder.hand_rest)):
        if rate <= 0:
            continue
        t = float(rng.exponential(60.0 / rate))
        while t < duration_s - 3.0:
            add(t)
            t += float(rng.exponential(60.0 / rate))
    return builder.build()
