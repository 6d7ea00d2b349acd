# Load-cell scale logic: HX711 counts -> milligrams -> settled weight changes.
#
# Runs unchanged on the cart's microcontroller (MicroPython on RP2040/ESP32),
# inside the PC emulator of the board and in CPython tests. It therefore sticks
# to the Python subset MicroPython runs: no dataclasses, typing, enum, abc or
# f-string tricks, no imports at all; annotations are written for mypy and
# ignored by MicroPython. Weights are integer milligrams everywhere: RP2040
# floats are single precision (24-bit mantissa), which cannot hold a 30 kg
# reading to the milligram.
"""Calibration and settle detection for the basket's load cells.

Why settle detection is shaped the way it is
--------------------------------------------
The host opens an item event on every ``Settled`` change, so a false change
is a phantom item. Everything here trades a little latency for never
reporting a change that is not a real load change:

* **Median of 5** on the raw milligrams removes single-sample glitches (an
  HX711 read disturbed by an interrupt, a one-sample saturation) without
  smearing a real step.
* **Moving average** (``smooth_samples``, 8 samples = 100 ms at 80 Hz) on top
  suppresses the white ADC noise and most of the basket's ringing (6-12 Hz),
  so the stability test below can use a tolerance close to the accuracy we
  want instead of one sized for raw noise.
* **Windowed max - min** of the smoothed signal over ``window_ms`` decides
  stability: stable when the whole window fits in ``tolerance_mg``. Unlike a
  variance test, a bump of any size anywhere in the window breaks it, and a
  short knock that returns to the same value re-settles on the same value,
  which the dead band below then swallows. The settled value is the mean of
  the window (an average over ``window_ms`` of already smoothed values), so it
  is accurate to well under the tolerance.
* **Dead band and merging** (creep, drift): a settled value is reported only
  when it differs from the last reported one by at least ``min_delta_mg``.
  While stable and inside the dead band, the reference follows the live value
  at no more than ``merge_mg_per_s``, so load-cell creep after a step and
  temperature drift under load (both far slower) are absorbed into the current
  value instead of adding up to a phantom change; a change faster than that
  while the signal stays stable (something slowly poured) still accumulates
  and is reported once it reaches ``min_delta_mg``.
* **Zero tracking**, as legal-for-trade scales do it: only while stable, only
  when the net weight is within ``zero_band_mg`` of zero, and at most
  ``zero_track_mg_per_s``; a real item heavier than the band is never eaten.

The event time of ``Settled`` is the start of the stable window (the oldest
sample in it), so the host can line it up with camera frames; the time at
which the event is *emitted* is one window later.

States: ``ok`` (stable), ``unstable`` (moving, or filters still filling),
``overload`` (ADC saturated or weight beyond capacity) and ``disconnected``
(no conversion for ``disconnect_timeout_ms``); every change is reported as a
``StateChanged`` event.
"""

STATE_OK = "ok"
STATE_UNSTABLE = "unstable"
STATE_OVERLOAD = "overload"
STATE_DISCONNECTED = "disconnected"
STATES = (STATE_OK, STATE_UNSTABLE, STATE_OVERLOAD, STATE_DISCONNECTED)

# The HX711 output is 24-bit two's complement; the driver sign-extends it. It
# clamps out-of-range inputs to these codes, so they mean "off scale".
ADC_MAX = 0x7FFFFF
ADC_MIN = -0x800000

_MEDIAN_SAMPLES = 5


def _div_round(num: int, den: int) -> int:
    """``num / den`` rounded half up, in exact integer arithmetic (either sign)."""
    if den < 0:
        num = -num
        den = -den
    return (2 * num + den) // (2 * den)


def _clamp(value: int, limit: int) -> int:
    if value > limit:
        return limit
    if value < -limit:
        return -limit
    return value


class Calibration:
    """Two-point linear map between raw HX711 counts and milligrams.

    Stored as the two points themselves and evaluated with exact integer
    arithmetic (rounded to the nearest unit), so a round trip loses at most
    half a count and no precision depends on the port's float width. On a
    32-bit port the intermediate product is a long integer: one small
    allocation per sample, cheaper than carrying a float error.
    """

    def __init__(self, zero_counts: int, span_counts: int, span_mg: int, zero_mg: int = 0) -> None:
        if span_counts == zero_counts:
            raise ValueError("degenerate calibration: span counts equal zero counts")
        if span_mg == zero_mg:
            raise ValueError("degenerate calibration: both points have the same weight")
        self.zero_counts = zero_counts
        self.span_counts = span_counts
        self.span_mg = span_mg
        self.zero_mg = zero_mg

    @staticmethod
    def from_points(c0: int, mg0: int, c1: int, mg1: int) -> "Calibration":
        """The calibration through (``c0`` counts, ``mg0``) and (``c1`` counts, ``mg1``)."""
        return Calibration(c0, c1, mg1, mg0)

    def to_mg(self, counts: int) -> int:
        return self.zero_mg + _div_round(
            (counts - self.zero_counts) * (self.span_mg - self.zero_mg),
            self.span_counts - self.zero_counts,
        )

    def to_counts(self, mg: int) -> int:
        return self.zero_counts + _div_round(
            (mg - self.zero_mg) * (self.span_counts - self.zero_counts),
            self.span_mg - self.zero_mg,
        )

    def __repr__(self) -> str:
        return (
            f"Calibration({self.zero_counts} counts = {self.zero_mg} mg, "
            f"{self.span_counts} counts = {self.span_mg} mg)"
        )


class ScaleEvent:
    """Something the host must hear about; ``kind`` says which (no isinstance needed)."""

    kind = ""

    def __init__(self, t_ms: int) -> None:
        self.t_ms = t_ms

    def fields(self) -> tuple[object, ...]:
        return (self.t_ms,)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScaleEvent):
            return NotImplemented
        return self.kind == other.kind and self.fields() == other.fields()

    def __repr__(self) -> str:
        return f"{self.kind}{self.fields()!r}"


class Settled(ScaleEvent):
    """The weight settled at a new value: ``delta_mg`` = this weight - the previous settled one.

    ``t_ms`` is when the signal became stable (start of the stable window).
    """

    kind = "settled"

    def __init__(self, weight_mg: int, delta_mg: int, t_ms: int) -> None:
        ScaleEvent.__init__(self, t_ms)
        self.weight_mg = weight_mg
        self.delta_mg = delta_mg

    def fields(self) -> tuple[object, ...]:
        return (self.weight_mg, self.delta_mg, self.t_ms)


class StateChanged(ScaleEvent):
    """The scale entered ``state`` (one of :data:`STATES`) at ``t_ms``."""

    kind = "state"

    def __init__(self, state: str, t_ms: int) -> None:
        ScaleEvent.__init__(self, t_ms)
        self.state = state

    def fields(self) -> tuple[object, ...]:
        return (self.state, self.t_ms)


class Tared(ScaleEvent):
    """A requested tare was applied: ``weight_mg`` (the load then present) is now zero.

    ``t_ms`` is the start of the stable window whose value became the zero.
    """

    kind = "tared"

    def __init__(self, weight_mg: int, t_ms: int) -> None:
        ScaleEvent.__init__(self, t_ms)
        self.weight_mg = weight_mg

    def fields(self) -> tuple[object, ...]:
        return (self.weight_mg, self.t_ms)


class Scale:
    """Per-sample pipeline: counts in, events out; O(window) memory, little work per sample.

    Call :meth:`update` for every HX711 conversion (``counts``, signed) or with
    ``None`` when the ADC did not answer. ``t_ms`` is a monotonic millisecond
    clock. ``weight_mg`` is the live (smoothed, net) weight for streaming;
    ``settled_mg`` the value the host was last told about.
    """

    def __init__(
        self,
        calibration: Calibration,
        capacity_mg: int,
        tolerance_mg: int,
        window_ms: int,
        min_delta_mg: int = 2000,
        smooth_samples: int = 8,
        zero_band_mg: int = 1000,
        zero_track_mg_per_s: int = 500,
        merge_mg_per_s: int = 200,
        disconnect_timeout_ms: int = 300,
        max_rate_hz: int = 100,
    ) -> None:
        if capacity_mg <= 0 or tolerance_mg <= 0 or window_ms <= 0 or min_delta_mg <= 0:
            raise ValueError("capacity, tolerance, window and min_delta must be positive")
        if smooth_samples < 1 or max_rate_hz < 1:
            raise ValueError("smooth_samples and max_rate_hz must be at least 1")
        self.calibration = calibration
        self.capacity_mg = capacity_mg
        self.tolerance_mg = tolerance_mg
        self.window_ms = window_ms
        self.min_delta_mg = min_delta_mg
        self.smooth_samples = smooth_samples
        self.zero_band_mg = zero_band_mg
        self.zero_track_mg_per_s = zero_track_mg_per_s
        self.merge_mg_per_s = merge_mg_per_s
        self.disconnect_timeout_ms = disconnect_timeout_ms

        self.state = STATE_UNSTABLE
        self.weight_mg = 0
        self.settled_mg = 0  # reference: the last settled value (calibration zero at boot)
        self.zero_offset_mg = 0  # zero tracking and tare, subtracted from gross weights
        self._tare_pending = False
        self._last_good_ms = -1  # -1: no sample yet
        self._last_t_ms = 0

        self._median: list[int] = []
        self._box: list[int] = [0] * smooth_samples
        self._box_len = 0
        self._box_pos = 0
        self._box_sum = 0
        self._win_cap = window_ms * max_rate_hz // 1000 + 2  # bounds memory at any rate
        self._win_t: list[int] = []
        self._win_v: list[int] = []
        self._win_sum = 0
        self._run_start_ms = 0  # first sample of the current uninterrupted run
        self._stable = False

    # -- public -----------------------------------------------------------

    def tare(self) -> None:
        """Make the next stable weight the new zero (reported with a ``Tared`` event)."""
        self._tare_pending = True

    def update(self, counts: int | None, t_ms: int) -> list[ScaleEvent]:
        """Feed one conversion (or ``None``: no answer from the ADC); return the events."""
        events: list[ScaleEvent] = []
        if self._last_good_ms < 0:
            self._last_good_ms = t_ms  # the timeout runs from the first call
        if counts is None:
            if (
                self.state != STATE_DISCONNECTED
                and t_ms - self._last_good_ms >= self.disconnect_timeout_ms
            ):
                self._reset_filters()
                self._set_state(STATE_DISCONNECTED, t_ms, events)
            return events
        if t_ms - self._last_good_ms >= self.disconnect_timeout_ms:
            self._reset_filters()  # a silent gap: the window must not span it
        self._last_good_ms = t_ms
        dt_ms = t_ms - self._last_t_ms
        self._last_t_ms = t_ms

        limit = self.capacity_mg + 1  # keeps off-scale values bounded in the filters
        if counts >= ADC_MAX:
            gross = limit
        elif counts <= ADC_MIN:
            gross = -limit
        else:
            gross = _clamp(self.calibration.to_mg(counts), limit)
        median = self._push_median(gross)
        overloaded = median > self.capacity_mg or median < -self.capacity_mg
        smoothed = self._push_box(median)
        if smoothed is None:  # filters still filling after boot or reconnection
            self.weight_mg = median - self.zero_offset_mg
            self._set_state(STATE_OVERLOAD if overloaded else STATE_UNSTABLE, t_ms, events)
            return events
        self.weight_mg = smoothed - self.zero_offset_mg
        self._push_window(smoothed, t_ms)
        if overloaded:
            self._stable = False
            self._set_state(STATE_OVERLOAD, t_ms, events)
            return events

        spread, mean = self._window_stats()
        if t_ms - self._run_start_ms < self.window_ms or spread > self.tolerance_mg:
            self._stable = False
            self._set_state(STATE_UNSTABLE, t_ms, events)
            return events
        value = mean - self.zero_offset_mg
        if not self._stable:
            self._stable = True
            self._set_state(STATE_OK, t_ms, events)
            dt_ms = 0  # no tracking credit for the time spent unstable
        self._on_stable(value, dt_ms, events)
        return events

    # -- settling ---------------------------------------------------------

    def _on_stable(self, value: int, dt_ms: int, events: list[ScaleEvent]) -> None:
        window_start = self._win_t[0]
        if self._tare_pending:
            self._tare_pending = False
            self.zero_offset_mg += value
            self.weight_mg -= value
            self.settled_mg = 0
            events.append(Tared(value, window_start))
            return
        delta = value - self.settled_mg
        if delta >= self.min_delta_mg or -delta >= self.min_delta_mg:
            self.settled_mg = value
            events.append(Settled(value, delta, window_start))
            return
        # Inside the dead band: zero tracking near zero, then creep/drift merging.
        if -self.zero_band_mg <= value <= self.zero_band_mg and value != 0:
            step = _clamp(value, _rate_step(self.zero_track_mg_per_s, dt_ms))
            self.zero_offset_mg += step
            self.weight_mg -= step
            value -= step
        self.settled_mg += _clamp(value - self.settled_mg, _rate_step(self.merge_mg_per_s, dt_ms))

    def _set_state(self, state: str, t_ms: int, events: list[ScaleEvent]) -> None:
        if state != self.state:
            self.state = state
            events.append(StateChanged(state, t_ms))

    # -- filters ----------------------------------------------------------

    def _reset_filters(self) -> None:
        self._median = []
        self._box_len = 0
        self._box_pos = 0
        self._box_sum = 0
        self._win_t = []
        self._win_v = []
        self._win_sum = 0
        self._stable = False

    def _push_median(self, mg: int) -> int:
        window = self._median
        window.append(mg)
        if len(window) > _MEDIAN_SAMPLES:
            window.pop(0)
        ordered = sorted(window)
        return ordered[len(ordered) // 2]

    def _push_box(self, mg: int) -> int | None:
        """Moving average of the last ``smooth_samples`` values, None until it is full."""
        n = self.smooth_samples
        if self._box_len == n:
            self._box_sum -= self._box[self._box_pos]
        else:
            self._box_len += 1
        self._box[self._box_pos] = mg
        self._box_sum += mg
        self._box_pos = (self._box_pos + 1) % n
        if self._box_len < n:
            return None
        return _div_round(self._box_sum, n)

    def _push_window(self, mg: int, t_ms: int) -> None:
        """Append to the window and drop what is older than ``window_ms``.

        Plain lists (append, ``pop(0)``: a short memmove in C) hold exactly the
        samples in the window, so the builtin, C-speed ``max``/``min`` give its
        extremes; the sum is kept incrementally for the mean.
        """
        values = self._win_v
        times = self._win_t
        if not values:
            self._run_start_ms = t_ms
        values.append(mg)
        times.append(t_ms)
        self._win_sum += mg
        oldest_allowed = t_ms - self.window_ms
        while len(values) > self._win_cap or (len(values) > 1 and times[0] < oldest_allowed):
            self._win_sum -= values.pop(0)
            times.pop(0)

    def _window_stats(self) -> tuple[int, int]:
        """(max - min, rounded mean) of the values in the window."""
        values = self._win_v
        return max(values) - min(values), _div_round(self._win_sum, len(values))


def _rate_step(mg_per_s: int, dt_ms: int) -> int:
    """Largest correction allowed over ``dt_ms`` at ``mg_per_s`` (at least 1 mg if enabled)."""
    if mg_per_s <= 0 or dt_ms <= 0:
        return 0
    step = mg_per_s * dt_ms // 1000
    return step if step > 0 else 1
