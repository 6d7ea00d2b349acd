# Board wiring for the cart microcontroller: pins, host link, feedback, watchdog.
#
# The only firmware module that touches real hardware, and it still imports
# ``machine`` only when ``start()`` or ``time_steps()`` runs on the board: every
# function takes the machine module (and a clock: the ``time`` module on the
# board) as a parameter, so CPython tests wire this same code to pin-level
# fakes. MicroPython subset: see codec.py.
"""Per-board pin tables and the construction of the application from real peripherals.

main.py stays a few lines long: it calls :func:`start` and runs the loop.
Everything a board port has to decide lives here, in one table per board:

* which pins carry the HX711 and the scanner UART, and where the buzzer, the
  LED and the safe-mode pin are;
* how the host link is reached: USB-CDC through the REPL's stdin/stdout (the
  default; Ctrl-C handling is switched off, since 0x03 is an ordinary byte of
  the binary protocol) or a hardware UART;
* a safe mode, checked before the watchdog starts (a started watchdog cannot
  be stopped): holding the safe pin low during the first second after reset
  leaves the board at the REPL so it can be reflashed.
"""

import os
import sys

try:
    from firmware_bridge import codec
    from firmware_bridge.firmware.app import MAX_CODE_BYTES, App
    from firmware_bridge.firmware.hx711 import GAIN_A_128, Hx711
    from firmware_bridge.firmware.scanner import ScannerReader
except ImportError:  # flat layout on the board
    import codec  # type: ignore[no-redef]
    from app import MAX_CODE_BYTES, App  # type: ignore[no-redef]
    from hx711 import GAIN_A_128, Hx711  # type: ignore[no-redef]
    from scanner import ScannerReader  # type: ignore[no-redef]

try:  # noqa: SIM105 - MicroPython has no contextlib
    from typing import Any
except ImportError:  # MicroPython: annotations are never evaluated there
    pass

# Pin numbers are GPIO numbers; "LED" is the Pico's (and Pico W's) on-board LED.
BOARDS: dict[str, dict[str, Any]] = {
    "rp2040-pico": {
        "hx711_dout": 2,
        "hx711_sck": 3,
        "scanner_uart": 1,
        "scanner_tx": 4,
        "scanner_rx": 5,
        "scanner_baud": 9600,
        "link_uart": 0,
        "link_tx": 0,
        "link_rx": 1,
        "link_baud": 460800,
        "buzzer": 15,
        "led": "LED",
        "safe": 22,  # jumper to GND at reset: stay at the REPL
        "timer": -1,  # a virtual timer
    },
    "esp32-devkit": {
        "hx711_dout": 26,
        "hx711_sck": 27,
        "scanner_uart": 2,
        "scanner_tx": 18,  # not 16/17: those carry PSRAM on WROVER modules
        "scanner_rx": 19,
        "scanner_baud": 9600,
        "link_uart": 1,  # UART0 is the REPL behind the board's USB bridge
        "link_tx": 32,
        "link_rx": 33,
        "link_baud": 460800,
        "buzzer": 25,
        "led": 2,
        "safe": 0,  # the BOOT button, pressed after reset (at reset it selects the ROM loader)
        "timer": 0,
    },
}
BOARD_BY_PLATFORM = {"rp2": "rp2040-pico", "esp32": "esp32-devkit"}

LINK_USB = "usb"
LINK_UART = "uart"
WATCHDOG_MS = 2000
BOOT_GRACE_MS = 1000  # the safe pin is watched this long before the watchdog starts
BOOT_COUNT_FILE = "bootcount"
LINK_READ_MAX = 128  # host bytes taken per step, so a flood cannot starve the scale
SCANNER_RX_BUFFER = 256
LINK_RX_BUFFER = 1024

# Feedback patterns: alternating on/off durations in milliseconds, starting "on".
FEEDBACK_PATTERNS = {
    codec.FEEDBACK_GOOD: (80,),
    codec.FEEDBACK_BAD: (300, 120, 300),
    codec.FEEDBACK_ATTENTION: (60, 80, 60, 80, 60),
}


def board_pins(board_name: str | None, platform: str) -> tuple[str, dict[str, Any]]:
    """The board's name and pin table: ``board_name``, or the default for ``sys.platform``."""
    name = board_name or BOARD_BY_PLATFORM.get(platform, "")
    if name not in BOARDS:
        known = ", ".join(BOARDS)
        raise ValueError(f"unknown board {name!r} (platform {platform!r}); known: {known}")
    return name, BOARDS[name]


# -- host link --------------------------------------------------------------


class UsbCdcLink:
    """The host link over USB-CDC: the REPL's stdin and stdout, read without blocking.

    MicroPython's ``sys.stdin.buffer.read(n)`` waits for all ``n`` bytes, so
    bytes are taken one at a time while ``select.poll`` says more are waiting,
    at most ``max_read`` per call.
    """

    def __init__(
        self,
        stream_in: Any,
        reader: Any,
        writer: Any,
        select_module: Any,
        max_read: int = LINK_READ_MAX,
    ) -> None:
        self._poller = select_module.poll()
        self._poller.register(stream_in, select_module.POLLIN)
        self._reader = reader
        self._writer = writer
        self._max_read = max_read

    def read(self) -> bytes:
        out = bytearray()
        poll = self._poller.poll
        while len(out) < self._max_read and poll(0):
            byte = self._reader.read(1)
            if not byte:
                break
            out.extend(byte)
        return bytes(out)

    def write(self, data: bytes) -> None:
        self._writer.write(data)


class UartLink:
    """The host link over a hardware UART (``any()``, ``read(n)``, ``write(b)``)."""

    def __init__(self, uart: Any, max_read: int = LINK_READ_MAX) -> None:
        self._uart = uart
        self._max_read = max_read

    def read(self) -> bytes:
        available = self._uart.any()
        if not available:
            return b""
        return self._uart.read(min(available, self._max_read)) or b""

    def write(self, data: bytes) -> None:
        self._uart.write(data)


def open_link(kind: str, pins: dict[str, Any], machine: Any) -> Any:
    """The host link of kind ``LINK_USB`` or ``LINK_UART`` (see main.py)."""
    if kind == LINK_UART:
        pin = machine.Pin
        uart = machine.UART(
            pins["link_uart"],
            baudrate=pins["link_baud"],
            tx=pin(pins["link_tx"]),
            rx=pin(pins["link_rx"]),
            rxbuf=LINK_RX_BUFFER,
        )
        return UartLink(uart)
    if kind != LINK_USB:
        raise ValueError(f"link must be {LINK_USB!r} or {LINK_UART!r}, not {kind!r}")
    import select

    try:
        import micropython

        micropython.kbd_intr(-1)  # 0x03 is data on this link, not Ctrl-C
    except ImportError:  # CPython: no REPL to protect
        pass
    return UsbCdcLink(sys.stdin, sys.stdin.buffer, sys.stdout.buffer, select)


# -- feedback ---------------------------------------------------------------


class FeedbackPlayer:
    """Plays ``feedback`` patterns on the buzzer and LED without blocking the main loop.

    A one-shot timer steps through the pattern, so a 700 ms error signal costs
    the loop nothing; a new pattern cuts the current one short. The buzzer is
    an active one (logic high sounds it).
    """

    def __init__(
        self,
        outputs: list[Any],
        timer: Any,
        one_shot: int,
        patterns: dict[int, tuple[int, ...]] | None = None,
    ) -> None:
        self._outputs = outputs
        self._timer = timer
        self._one_shot = one_shot
        self._patterns = patterns or FEEDBACK_PATTERNS
        self._steps: tuple[int, ...] = ()
        self._index = 0
        self._advance_cb = self._advance  # bound once: the timer callback allocates nothing
        self.played: list[int] = []  # the last few patterns started, for diagnostics
        self._set(0)

    def __call__(self, pattern: int) -> None:
        steps = self._patterns.get(pattern)
        if steps is None:
            return
        self.played.append(pattern)
        if len(self.played) > 8:
            self.played.pop(0)
        self._steps = steps
        self._index = 0
        self._set(1)
        self._arm(steps[0])

    def _advance(self, _timer: object) -> None:
        self._index += 1
        if self._index >= len(self._steps):
            self._set(0)
            return
        self._set(0 if self._index % 2 else 1)
        self._arm(self._steps[self._index])

    def _arm(self, period_ms: int) -> None:
        self._timer.init(mode=self._one_shot, period=period_ms, callback=self._advance_cb)

    def _set(self, level: int) -> None:
        for pin in self._outputs:
            pin.value(level)


# -- boot -------------------------------------------------------------------


def make_boot_id(random_bytes: bytes, unique_id: bytes, boot_count: int) -> int:
    """A 31-bit boot id: 16 bits that differ between boards, over a 15-bit boot counter.

    The high bits are the chip id's CRC, mixed with fresh random bits when the
    port has them; the counter makes consecutive boots of one board differ
    even where the random source is weak right after reset.
    """
    high = codec.crc16(unique_id)
    if len(random_bytes) >= 2:
        high ^= (random_bytes[0] << 8) | random_bytes[1]
    return (high << 15) | (boot_count & 0x7FFF)


def next_boot_count(path: str) -> int:
    """Increment and return the boot counter kept in ``path`` (0 when there is no filesystem)."""
    count = 1
    try:
        with open(path) as f:
            count = int(f.read().strip() or "0") + 1
    except (OSError, ValueError):
        pass
    try:
        with open(path, "w") as f:
            f.write(str(count))
    except OSError:
        return 0
    return count


def random_bytes(n: int) -> bytes:
    urandom = getattr(os, "urandom", None)
    return urandom(n) if urandom is not None else b""


def safe_mode_requested(pin: Any, grace_ms: int, sleep_ms: Any) -> bool:
    """True when ``pin`` reads low at any time during the first ``grace_ms``."""
    waited = 0
    while True:
        if pin.value() == 0:
            return True
        if waited >= grace_ms:
            return False
        sleep_ms(10)
        waited += 10


# -- assembly ---------------------------------------------------------------


def build_app(
    board_name: str,
    pins: dict[str, Any],
    link: Any,
    machine: Any,
    clock: Any,
    boot_id: int,
) -> App:
    """The application on this board's HX711, scanner, buzzer and LED.

    ``clock`` provides ``ticks_us``, ``ticks_ms`` and ``ticks_diff``: the
    ``time`` module on the board.
    """
    pin = machine.Pin
    # Pull-up: a disconnected DOUT reads "not ready" (silence -> disconnected),
    # never a stream of zero counts.
    hx711 = Hx711(
        pin(pins["hx711_dout"], pin.IN, pin.PULL_UP),
        pin(pins["hx711_sck"], pin.OUT, value=0),
        gain=GAIN_A_128,
        ticks_ms=clock.ticks_ms,
        ticks_diff=clock.ticks_diff,
        irq_off=machine.disable_irq,
        irq_on=machine.enable_irq,
    )
    scanner_uart = machine.UART(
        pins["scanner_uart"],
        baudrate=pins["scanner_baud"],
        tx=pin(pins["scanner_tx"]),
        rx=pin(pins["scanner_rx"]),
        rxbuf=SCANNER_RX_BUFFER,
    )
    scanner = ScannerReader(
        scanner_uart,
        max_code_bytes=MAX_CODE_BYTES,
        ticks_ms=clock.ticks_ms,
        ticks_diff=clock.ticks_diff,
    )
    feedback = FeedbackPlayer(
        [pin(pins["buzzer"], pin.OUT, value=0), pin(pins["led"], pin.OUT, value=0)],
        machine.Timer(pins["timer"]),
        machine.Timer.ONE_SHOT,
    )
    return App(
        board_name,
        hx711,
        scanner,
        link.read,
        link.write,
        clock.ticks_us,
        clock.ticks_diff,
        boot_id,
        feedback,
    )


def _machine_and_clock(machine: Any, clock: Any) -> tuple[Any, Any]:
    """The given hardware modules, or the board's own ``machine`` and ``time``."""
    if machine is None:
        import machine as machine_module

        machine = machine_module
    if clock is None:
        import time

        clock = time
    return machine, clock


def start(
    board_name: str | None = None,
    link_kind: str = LINK_USB,
    machine: Any = None,
    clock: Any = None,
    grace_ms: int = BOOT_GRACE_MS,
    boot_count_file: str = BOOT_COUNT_FILE,
) -> tuple[App, Any] | None:
    """Build the application and start the watchdog; None in safe mode (stay at the REPL)."""
    machine, clock = _machine_and_clock(machine, clock)
    name, pins = board_pins(board_name, sys.platform)
    safe_pin = machine.Pin(pins["safe"], machine.Pin.IN, machine.Pin.PULL_UP)
    if safe_mode_requested(safe_pin, grace_ms, clock.sleep_ms):
        return None
    boot_id = make_boot_id(random_bytes(4), machine.unique_id(), next_boot_count(boot_count_file))
    link = open_link(link_kind, pins, machine)
    app = build_app(name, pins, link, machine, clock, boot_id)
    wdt = machine.WDT(timeout=WATCHDOG_MS)
    return app, wdt


# -- on-board timing check ----------------------------------------------------


class MemoryLink:
    """A host link in memory: bytes queued with ``send`` arrive; written bytes are counted."""

    def __init__(self) -> None:
        self._incoming = bytearray()
        self.written = 0

    def send(self, data: bytes) -> None:
        self._incoming.extend(data)

    def read(self) -> bytes:
        data = bytes(self._incoming)
        self._incoming = bytearray()
        return data

    def write(self, data: bytes) -> None:
        self.written += len(data)


def streaming_setup(dictionary: codec.Dictionary) -> bytes:
    """Host frames that sync the link, configure a nominal scale and stream every sample."""
    config: dict[str, object] = {
        "zero_counts": 0,
        "span_counts": 1000000,
        "span_mg": 10000000,
        "capacity_mg": 30000000,
        "tolerance_mg": 2000,
        "window_ms": 500,
        "min_delta_mg": 2000,
    }
    return (
        codec.encode_frame(0, b"", codec.FLAG_SYN)
        + codec.encode_frame(0, dictionary.encode_command("config_scale", config))
        + codec.encode_frame(1, dictionary.encode_command("set_stream", {"every": 1}))
    )


def time_steps(
    steps: int = 2000,
    board_name: str | None = None,
    machine: Any = None,
    clock: Any = None,
) -> dict[str, int]:
    """Time ``app.step()`` on this board's real HX711 and scanner, streaming every sample.

    Run it from the REPL in safe mode: ``import board; board.time_steps()``.
    Returns the longest and mean step in µs, the conversions read and, on
    MicroPython, the heap in use and free afterwards.
    """
    import gc

    machine, clock = _machine_and_clock(machine, clock)
    name, pins = board_pins(board_name, sys.platform)
    link = MemoryLink()
    app = build_app(name, pins, link, machine, clock, 0)
    link.send(streaming_setup(app.dictionary))
    longest = 0
    total = 0
    for _ in range(steps):
        t0 = clock.ticks_us()
        app.step()
        elapsed = clock.ticks_diff(clock.ticks_us(), t0)
        total += elapsed
        longest = max(longest, elapsed)
    gc.collect()
    result = {
        "max_step_us": longest,
        "mean_step_us": total // steps,
        "conversions": app.hx711.conversions,
    }
    mem_alloc = getattr(gc, "mem_alloc", None)  # MicroPython only
    if mem_alloc is not None:
        result["heap_used"] = mem_alloc()
        result["heap_free"] = gc.mem_free()  # type: ignore[attr-defined]
    return result
