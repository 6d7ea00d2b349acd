# Bit-banged HX711 driver for the basket's load cell.
#
# Runs on the cart's microcontroller (MicroPython on RP2040/ESP32) and in
# CPython tests against a pin-level model of the chip, so it sticks to the
# MicroPython subset (see codec.py) and never imports ``machine``: the board
# wiring (board.py) hands it two Pin objects and, on real hardware,
# ``machine.disable_irq``/``machine.enable_irq``.
"""Non-blocking HX711 conversions over two GPIO pins.

Why the driver is shaped this way
---------------------------------
* **Never waits.** The HX711 pulls DOUT low when a conversion is ready (80 or
  10 per second). ``read()`` returns None at once while DOUT is high, so the
  application loop keeps serving the host link and the scanner between
  conversions.
* **One real-time constraint, honoured per pulse.** Holding PD_SCK high for
  more than 60 µs powers the chip down, which corrupts a read in progress.
  Each clock pulse is therefore as short as the port allows and, when
  interrupt masking is injected, runs with interrupts masked for just that
  pulse (a few µs); a whole 27-pulse read is never masked, so USB and UART
  interrupts are delayed by microseconds, not by the read.
* **The gain is a property of the *next* conversion.** The 1-3 extra pulses
  after the 24 data bits choose channel and gain for the conversion that
  follows, and a reset (power cycle) returns the chip to channel A, gain 128.
  The driver tracks which gain the chip is converting at and discards
  conversions made at another gain, plus the datasheet's settling time after
  any reset or gain change (50 ms at 80 SPS, 400 ms at 10 SPS: four output
  periods at either rate).
* **Wiring faults become silence, never numbers.** A chip that stops
  answering (DOUT held high: unplugged, unpowered, latched up) makes ``read()``
  return None, which the application's timeout reports as ``disconnected``;
  after ``stall_ms`` the driver power-cycles the chip once per ``stall_ms`` to
  recover a latched-up one. A DOUT line stuck low (no chip driving it) would
  read as zero counts forever; the HX711 always drives DOUT high after the
  25th pulse, so a line still low after a read is rejected as a fault.
* Saturated conversions (0x7FFFFF, 0x800000) pass through as the extremes
  +(2**23 - 1) and -2**23; the scale logic reports them as ``overload``.
"""

import time

try:
    from collections.abc import Callable
    from typing import Any
except ImportError:  # MicroPython: annotations are never evaluated there
    pass

# Extra PD_SCK pulses after the 24 data bits: they select the next conversion.
GAIN_A_128 = 1
GAIN_B_32 = 2
GAIN_A_64 = 3
GAINS = (GAIN_A_128, GAIN_B_32, GAIN_A_64)

DATA_BITS = 24
POWER_DOWN_US = 80  # PD_SCK high for more than 60 µs powers the chip down
SETTLE_CONVERSIONS = 4  # settling time after a reset or gain change, in output periods
STALL_MS = 1000  # no conversion for this long: the chip is stalled; power-cycle it
FAULT_HOLDOFF_MS = 50  # after a stuck-low read, leave the line alone this long

_SIGN_BIT = 1 << (DATA_BITS - 1)
_FULL_SCALE = 1 << DATA_BITS


def _port_time(name: str, fallback: Any) -> Any:
    """MicroPython's ``time.<name>`` (sleep_us, ticks_ms, ticks_diff), or the CPython fallback."""
    return getattr(time, name, fallback)


def _sleep_us_fallback(us: int) -> None:
    time.sleep(us / 1000000)


def _ticks_ms_fallback() -> int:
    return int(time.monotonic() * 1000)


def _ticks_diff_fallback(a: int, b: int) -> int:
    return a - b


def to_signed(raw: int) -> int:
    """A 24-bit two's complement code as a signed integer."""
    return raw - _FULL_SCALE if raw & _SIGN_BIT else raw


class Hx711:
    """One HX711 on a DOUT input pin and a PD_SCK output pin (``value()``/``value(v)``).

    ``delay_us`` defaults to ``time.sleep_us`` where the port has it;
    ``pulse_us`` is the PD_SCK high time (0: as fast as the pin calls go,
    which is already well above the chip's 0.2 µs minimum on an RP2040).
    ``irq_off``/``irq_on`` are ``machine.disable_irq``/``machine.enable_irq``
    on the board; give both or neither. ``ticks_ms``/``ticks_diff`` default
    to the port's tick functions (a monotonic clock on CPython).
    """

    def __init__(
        self,
        dout: Any,
        pd_sck: Any,
        gain: int = GAIN_A_128,
        delay_us: Callable[[int], object] | None = None,
        pulse_us: int = 1,
        ticks_ms: Callable[[], int] | None = None,
        ticks_diff: Callable[[int, int], int] | None = None,
        irq_off: Callable[[], Any] | None = None,
        irq_on: Callable[[Any], object] | None = None,
        settle_conversions: int = SETTLE_CONVERSIONS,
        stall_ms: int = STALL_MS,
        fault_holdoff_ms: int = FAULT_HOLDOFF_MS,
    ) -> None:
        if gain not in GAINS:
            raise ValueError("gain must be one of GAIN_A_128, GAIN_B_32, GAIN_A_64")
        if (irq_off is None) != (irq_on is None):
            raise ValueError("give both irq_off and irq_on, or neither")
        if pulse_us < 0 or pulse_us > 20:
            raise ValueError("pulse_us must be 0..20: PD_SCK high for 60 µs powers the chip down")
        self._dout = dout
        self._sck = pd_sck
        self._delay_us = delay_us or _port_time("sleep_us", _sleep_us_fallback)
        self._pulse_us = pulse_us
        self._ticks_ms = ticks_ms or _port_time("ticks_ms", _ticks_ms_fallback)
        self._ticks_diff = ticks_diff or _port_time("ticks_diff", _ticks_diff_fallback)
        self._irq_off = irq_off
        self._irq_on = irq_on
        self._settle = settle_conversions
        self._stall_ms = stall_ms
        self._fault_holdoff_ms = fault_holdoff_ms
        self.gain = gain
        self.powered = False
        self.stalled = False  # no conversion for stall_ms; cleared by the next one
        self.conversions = 0  # conversions returned by read()
        self.discarded = 0  # conversions thrown away: settling, or made at another gain
        self.faults = 0  # reads after which DOUT stayed low: no chip driving the line
        self.stalls = 0  # episodes of silence longer than stall_ms
        self.resets = 0  # power cycles (at start-up and to recover a stalled chip)
        self._chip_gain = GAIN_A_128  # the gain of the conversion the chip is making
        self._skip = 0
        self._last_ready_ms = 0
        self._fault_ms = 0
        self._fault_hold = False
        # The chip may still be converting at a gain chosen before this MCU
        # (re)started; a power cycle puts it in a known state.
        self.reset()

    # -- power ------------------------------------------------------------

    def power_down(self) -> None:
        """Hold PD_SCK high for more than 60 µs; the chip sleeps until ``power_up``."""
        self._sck.value(0)
        self._sck.value(1)
        self._delay_us(POWER_DOWN_US)
        self.powered = False

    def power_up(self) -> None:
        """PD_SCK low: the chip wakes reset (channel A, gain 128) and settles again."""
        self._sck.value(0)
        self.powered = True
        self._chip_gain = GAIN_A_128
        self._skip = self._settle if self.gain == GAIN_A_128 else 0
        self._last_ready_ms = self._ticks_ms()
        self._fault_hold = False

    def reset(self) -> None:
        """Power-cycle the chip (about 80 µs)."""
        self.power_down()
        self.power_up()
        self.resets += 1

    def set_gain(self, gain: int) -> None:
        """Select the gain; conversions are returned again once the chip has settled at it."""
        if gain not in GAINS:
            raise ValueError("gain must be one of GAIN_A_128, GAIN_B_32, GAIN_A_64")
        self.gain = gain

    # -- conversions ------------------------------------------------------

    def ready(self) -> bool:
        return self.powered and self._dout.value() == 0

    def read(self) -> int | None:
        """The next conversion as signed counts, or None when none is ready; never blocks."""
        if not self.powered:
            return None
        now = self._ticks_ms()
        if self._fault_hold:
            if self._ticks_diff(now, self._fault_ms) < self._fault_holdoff_ms:
                return None
            self._fault_hold = False
        if self._dout.value():
            if self._ticks_diff(now, self._last_ready_ms) > self._stall_ms:
                if not self.stalled:
                    self.stalled = True
                    self.stalls += 1
                self.reset()
            return None
        raw = self._shift_in(self.gain)
        made_at = self._chip_gain
        self._chip_gain = self.gain
        if self._dout.value() == 0:
            # A real HX711 drives DOUT high after the 25th pulse until its next
            # conversion; a line still low is not driven by a chip at all.
            self.faults += 1
            self._fault_ms = now
            self._fault_hold = True
            return None
        self._last_ready_ms = now
        self.stalled = False
        if made_at != self.gain:
            self.discarded += 1
            self._skip = self._settle  # the next ones settle at the new gain
            return None
        if self._skip:
            self._skip -= 1
            self.discarded += 1
            return None
        self.conversions += 1
        return to_signed(raw)

    def _shift_in(self, extra_pulses: int) -> int:
        """Clock out 24 bits MSB first, then ``extra_pulses`` that select the next gain.

        Keep this loop free of allocations: a garbage collection while PD_SCK
        is high could stretch the pulse past 60 µs.
        """
        dout = self._dout
        sck = self._sck
        delay_us = self._delay_us
        pulse_us = self._pulse_us
        irq_off = self._irq_off
        irq_on = self._irq_on
        value = 0
        for i in range(DATA_BITS + extra_pulses):
            if irq_off is not None and irq_on is not None:
                state = irq_off()  # machine.disable_irq(): only for this pulse
                sck.value(1)
                if pulse_us:
                    delay_us(pulse_us)
                sck.value(0)
                irq_on(state)  # machine.enable_irq(state)
            else:
                sck.value(1)
                if pulse_us:
                    delay_us(pulse_us)
                sck.value(0)
            if i < DATA_BITS:
                # The bit appeared on DOUT at the rising edge and holds until
                # the next one, so it is read with interrupts enabled.
                value = (value << 1) | dout.value()
        return value
