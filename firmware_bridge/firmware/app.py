# The board application: load cell + scanner + link, one non-blocking step at a time.
#
# Hardware is injected (an HX711 reader, a scanner reader, the host link and a
# microsecond tick source), so the same code runs on an RP2040/ESP32 under
# MicroPython (main.py wires real pins) and inside the PC emulator (fake
# peripherals on a pseudo-terminal). MicroPython subset: see codec.py.
"""Firmware application loop shared by the real board and the emulator."""

try:
    from firmware_bridge import codec, scale
    from firmware_bridge.mcu_link import McuLink
except ImportError:  # flat layout on the board
    import codec  # type: ignore[no-redef]
    import scale  # type: ignore[no-redef]
    from mcu_link import McuLink  # type: ignore[no-redef]

try:
    from collections.abc import Callable
    from typing import Any
except ImportError:  # MicroPython
    pass

FIRMWARE_VERSION = "cartos-mcu 1.0.0"
MAX_CODE_BYTES = 40  # longest scan forwarded (fits one frame with eid and clock)


def identify_document(board: str, boot_id: int, dictionary: codec.Dictionary) -> bytes:
    """The JSON document ``identify`` serves: protocol version, messages, board facts."""
    import json

    commands, responses = dictionary.specs()
    doc = {
        "protocol": codec.PROTOCOL_VERSION,
        "firmware": FIRMWARE_VERSION,
        "board": board,
        "boot_id": boot_id,
        "clock_freq": 1000000,
        "window": codec.WINDOW,
        "max_frame": codec.MAX_FRAME,
        "commands": commands,
        "responses": responses,
    }
    return json.dumps(doc).encode()


class App:
    """One microcontroller: reads the scale and scanner, talks to the host.

    ``hx711.read()`` returns raw counts or None when no conversion is ready;
    ``scanner.read_code()`` returns a complete scanned code or None;
    ``link_read()`` returns whatever bytes arrived (possibly b"") and
    ``link_write(b)`` sends; ``ticks_us()`` is any free-running microsecond
    counter (wrap-around handled here with ``ticks_diff``).
    """

    def __init__(
        self,
        board: str,
        hx711: Any,
        scanner: Any,
        link_read: Callable[[], bytes],
        link_write: Callable[[bytes], object],
        ticks_us: Callable[[], int],
        ticks_diff: Callable[[int, int], int],
        boot_id: int,
        feedback: Callable[[int], object] | None = None,
        adc_timeout_ms: int = 500,
    ) -> None:
        self.hx711 = hx711
        self.scanner = scanner
        self._read = link_read
        self._ticks_us = ticks_us
        self._ticks_diff = ticks_diff
        self._feedback = feedback
        self._last_ticks = ticks_us()
        self.now_us = 0  # our own unbounded clock; the wire carries its low 32 bits
        self.dictionary = codec.default_dictionary()
        self.link = McuLink(link_write, identify_document(board, boot_id, self.dictionary),
                            self.dictionary)
        self.scale: scale.Scale | None = None
        self.stream_every = 0  # forward every Nth ADC sample; 0 = no sample stream
        self._since_stream = 0
        self._last_adc_ms = 0
        self._adc_timeout_ms = adc_timeout_ms
        self._last_weight_mg = 0
        self._last_raw = 0
        self._pending_tare = 0
        self._done_tares: list[int] = []
        self._pending_events: list[tuple[str, dict[str, object]]] = []

    @property
    def clock(self) -> int:
        return self.now_us & 0xFFFFFFFF

    def _tick(self) -> int:
        t = self._ticks_us()
        self.now_us += self._ticks_diff(t, self._last_ticks)
        self._last_ticks = t
        return self.now_us // 1000

    def step(self) -> None:
        """One pass of the main loop; never blocks."""
        now_ms = self._tick()
        data = self._read()
        if data:
            for name, values in self.link.feed(data, now_ms, self.clock):
                self._command(name, values, now_ms)
        counts = self.hx711.read()
        if counts is not None:
            self._last_adc_ms = now_ms
            self._sample(counts, now_ms)
        elif now_ms - self._last_adc_ms > self._adc_timeout_ms:
            self._last_adc_ms = now_ms
            self._sample(None, now_ms)
        code = self.scanner.read_code()
        if code:
            self._emit("scan", {"clock": self.clock, "code": bytes(code)[:MAX_CODE_BYTES]}, now_ms,
                       is_scan=True)
        self._retry_pending(now_ms)
        self.link.poll(now_ms)

    # -- commands ---------------------------------------------------------

    def _command(self, name: str, v: dict[str, object], now_ms: int) -> None:
        if name == "config_scale":
            try:
                cal = scale.Calibration(
                    int(v["zero_counts"]),  # type: ignore[call-overload]
                    int(v["span_counts"]),  # type: ignore[call-overload]
                    int(v["span_mg"]),  # type: ignore[call-overload]
                )
                fresh = scale.Scale(
                    cal,
                    capacity_mg=int(v["capacity_mg"]),  # type: ignore[call-overload]
                    tolerance_mg=int(v["tolerance_mg"]),  # type: ignore[call-overload]
                    window_ms=int(v["window_ms"]),  # type: ignore[call-overload]
                    min_delta_mg=int(v["min_delta_mg"]),  # type: ignore[call-overload]
                )
                if self.scale is not None:
                    # The host sends its configuration on every (re)connection; the basket
                    # has not changed meanwhile, so the new scale carries on from the old
                    # reference and zero instead of announcing the whole load as an arrival.
                    fresh.settled_mg = self.scale.settled_mg
                    fresh.zero_offset_mg = self.scale.zero_offset_mg
                self.scale = fresh
            except ValueError as exc:
                # A bad calibration must not crash the loop (the watchdog would reboot the
                # board and the host would resend the same config forever): refuse it.
                self.link.send("error", {"code": codec.ERROR_BAD_PAYLOAD,
                                         "detail": str(exc)[:40]})
        elif name == "tare":
            token = int(v["token"])  # type: ignore[call-overload]
            if self.scale is None:
                self.link.send("error", {"code": codec.ERROR_NOT_CONFIGURED, "detail": b"tare"})
            elif token not in self._done_tares:  # a resent tare is applied once
                self._done_tares.append(token)
                self._done_tares = self._done_tares[-8:]
                self._pending_tare = token
                self.scale.tare()
        elif name == "set_stream":
            self.stream_every = int(v["every"])  # type: ignore[call-overload]
            self._since_stream = 0
        elif name == "feedback":
            if self._feedback is not None:
                self._feedback(int(v["pattern"]))  # type: ignore[call-overload]
        else:
            self.link.send("error", {"code": codec.ERROR_UNKNOWN_COMMAND, "detail": name[:40]})

    # -- scale ------------------------------------------------------------

    def _sample(self, counts: int | None, now_ms: int) -> None:
        state = 0
        if self.scale is not None:
            for ev in self.scale.update(counts, now_ms):
                self._scale_event(ev, now_ms)
            self._last_weight_mg = self.scale.weight_mg
            state = codec.SCALE_STATES.index(self.scale.state)
        if counts is not None:
            self._last_raw = counts
        self._since_stream += 1
        if self.stream_every and self._since_stream >= self.stream_every:
            self._since_stream = 0
            self.link.send(
                "sample",
                {"clock": self.clock, "weight_mg": self._last_weight_mg, "raw": self._last_raw,
                 "state": state},
            )

    def _scale_event(self, ev: Any, now_ms: int) -> None:
        clock = (ev.t_ms * 1000) & 0xFFFFFFFF
        kind = ev.kind
        if kind == "settled":
            self._emit("settled", {"clock": clock, "weight_mg": ev.weight_mg,
                                   "delta_mg": ev.delta_mg}, now_ms)
        elif kind == "state":
            self._emit("scale_state", {"clock": clock,
                                       "state": codec.SCALE_STATES.index(ev.state)}, now_ms)
        elif kind == "tared":
            self._emit("tared", {"clock": clock, "token": self._pending_tare}, now_ms)

    # -- reliable events --------------------------------------------------

    def _emit(self, name: str, values: dict[str, object], now_ms: int, is_scan: bool = False
              ) -> None:
        """Queue a reliable event, keeping order behind anything already waiting.

        When the event queue is full (host away for long), a scan is refused
        with an error beep so the shopper scans again later rather than the
        code being dropped silently; other events wait here in order.
        """
        if self._pending_events or not self.link.emit_event(name, values, now_ms):
            if is_scan:
                if self._feedback is not None:
                    self._feedback(codec.FEEDBACK_BAD)
                return
            if len(self._pending_events) < 16:
                self._pending_events.append((name, values))
            elif name == "settled":
                self._merge_settled(values)
            return
        if is_scan and self._feedback is not None:
            self._feedback(codec.FEEDBACK_GOOD)

    def _merge_settled(self, values: dict[str, object]) -> None:
        """Holding list full: fold a new settled weight into the newest one waiting.

        The host then sees one change from the last weight it knows to the
        latest one (deltas add up), instead of losing a change.
        """
        for i in range(len(self._pending_events) - 1, -1, -1):
            name, old = self._pending_events[i]
            if name == "settled":
                merged = dict(values)
                merged["delta_mg"] = int(old["delta_mg"]) + int(values["delta_mg"])  # type: ignore[call-overload]
                self._pending_events[i] = (name, merged)
                return
        for i in range(len(self._pending_events)):
            if self._pending_events[i][0] == "scale_state":  # a stale state is the cheapest loss
                self._pending_events.pop(i)
                self._pending_events.append(("settled", values))
                return

    def _retry_pending(self, now_ms: int) -> None:
        while self._pending_events:
            name, values = self._pending_events[0]
            if not self.link.emit_event(name, values, now_ms):
                return
            self._pending_events.pop(0)
