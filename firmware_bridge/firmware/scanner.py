# Line assembly for the cart's UART barcode module.
#
# Runs on the cart's microcontroller (MicroPython on RP2040/ESP32) and in
# CPython tests against a fake UART, so it sticks to the MicroPython subset
# (see codec.py) and never imports ``machine``: board.py hands it the UART.
"""Turn the scanner module's byte stream into whole scanned codes, one per call.

The module sends each decoded symbol as its text followed by a terminator
(CR, LF or CR LF, depending on how it is configured). The reader keeps the raw
text exactly as received, symbology prefixes included: only the host knows
the catalogue and validates check digits, so nothing is "cleaned" here where
a mistake could turn one valid code into another. What it does guard against
is framing trouble on a noisy cart harness:

* empty lines (the LF of a CR LF pair, stray terminators) are dropped;
* a line longer than ``max_code_bytes`` is discarded whole, up to its
  terminator, and counted: forwarding a truncated code would be worse than
  none, since the shopper gets no error beep and the host sees a wrong code;
* with a tick source, a partial line that stops arriving for
  ``line_timeout_ms`` (noise at power-up, a module reset mid-code) is
  discarded so it cannot become the prefix of the next code;
* completed codes wait in a small queue, because the application takes one
  per loop iteration while one UART read may hold several; codes beyond the
  queue are dropped and counted rather than growing memory.
"""

try:
    from collections.abc import Callable
    from typing import Any
except ImportError:  # MicroPython: annotations are never evaluated there
    pass

CR = 13
LF = 10
MAX_CODE_BYTES = 40  # the protocol's limit for the ``scan`` event's code
MAX_QUEUED = 4
READ_CHUNK = 64  # bytes taken from the UART per call: bounds one call's work
LINE_TIMEOUT_MS = 250  # a 40-byte code takes 42 ms at 9600 baud


class ScannerReader:
    """Reads a UART-like object (``any()``, ``read(n)`` -> bytes or None) without blocking."""

    def __init__(
        self,
        uart: Any,
        max_code_bytes: int = MAX_CODE_BYTES,
        max_queued: int = MAX_QUEUED,
        ticks_ms: Callable[[], int] | None = None,
        ticks_diff: Callable[[int, int], int] | None = None,
        line_timeout_ms: int = LINE_TIMEOUT_MS,
    ) -> None:
        if max_code_bytes < 1 or max_queued < 1:
            raise ValueError("max_code_bytes and max_queued must be at least 1")
        if (ticks_ms is None) != (ticks_diff is None):
            raise ValueError("give both ticks_ms and ticks_diff, or neither")
        self._uart = uart
        self._max = max_code_bytes
        self._max_queued = max_queued
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff
        self._line_timeout_ms = line_timeout_ms
        self._line = bytearray()
        self._discarding = False  # inside an over-long line, waiting for its terminator
        self._last_byte_ms = 0
        self._queue: list[bytes] = []
        self.codes = 0  # complete codes accepted
        self.overlong = 0  # lines discarded for exceeding max_code_bytes
        self.dropped = 0  # complete codes lost because the queue was full
        self.stale = 0  # partial lines discarded after line_timeout_ms of silence

    def pending(self) -> int:
        """Codes waiting to be taken."""
        return len(self._queue)

    def read_code(self) -> bytes | None:
        """The oldest complete code (without terminator), or None."""
        self._poll()
        if self._queue:
            return self._queue.pop(0)
        return None

    def _poll(self) -> None:
        available = self._uart.any()
        data = self._uart.read(min(available, READ_CHUNK)) if available else None
        if data:
            self._feed(data)
            if self._ticks_ms is not None:
                self._last_byte_ms = self._ticks_ms()
        elif (self._line or self._discarding) and self._ticks_ms is not None:
            self._expire_partial_line(self._ticks_ms())

    def _expire_partial_line(self, now_ms: int) -> None:
        ticks_diff = self._ticks_diff
        if ticks_diff is None or ticks_diff(now_ms, self._last_byte_ms) <= self._line_timeout_ms:
            return
        if self._line:
            self.stale += 1
        self._line = bytearray()
        self._discarding = False

    def _feed(self, data: bytes) -> None:
        line = self._line
        for byte in data:
            if byte in (CR, LF):
                if self._discarding:
                    self._discarding = False
                elif line:
                    self._complete(bytes(line))
                    line = self._line = bytearray()
            elif self._discarding:
                continue
            elif len(line) >= self._max:
                self.overlong += 1
                self._discarding = True
                line = self._line = bytearray()
            else:
                line.append(byte)

    def _complete(self, code: bytes) -> None:
        if len(self._queue) >= self._max_queued:
            self.dropped += 1
            return
        self._queue.append(code)
        self.codes += 1
