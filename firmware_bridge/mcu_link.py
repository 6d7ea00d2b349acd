# The microcontroller's end of the link (PROTOCOL.md sections 3-6).
#
# MicroPython subset, like codec.py: the firmware on the board and the PC
# emulator run this same code, so the emulator tests the real firmware logic.
"""MCU side: sequence tracking, ack/nak, identify, clock, and the reliable event queue."""

try:
    from firmware_bridge import codec
except ImportError:  # flat layout on the board
    import codec  # type: ignore[no-redef]

try:  # noqa: SIM105 - MicroPython has no contextlib
    from collections.abc import Callable
except ImportError:  # MicroPython: annotations are never evaluated there
    pass


class McuLink:
    """Everything the MCU does with bytes from and to the host.

    Host -> MCU frames are reliable at the link layer: the MCU acknowledges
    each by echoing the next sequence number it expects in every frame it
    sends, and NAKs a gap or a damaged frame so the host resends at once.
    MCU -> host frames are not retransmitted by the link; what must arrive
    (scans, settled weights) goes through the event queue here, which resends
    each event until the host acknowledges its ``eid``.
    """

    def __init__(
        self,
        write: Callable[[bytes], object],
        identify_data: bytes,
        dictionary: codec.Dictionary,
        queue_capacity: int = 64,
        resend_ms: int = 150,
        idle_resend_ms: int = 1000,
    ) -> None:
        self._write = write
        self.dictionary = dictionary
        self._identify = identify_data
        self._decoder = codec.FrameDecoder()
        self.synced = False
        self.expected = 0  # next host sequence number we accept
        self._ack_due = False
        self._nak_due = False
        self._resync_due = False
        self._out: list[bytes] = []  # encoded messages waiting to be framed
        self.queue: list[list[object]] = []  # [eid, encoded, last_sent_ms]
        self.queue_capacity = queue_capacity
        self.next_eid = 1
        self.resend_ms = resend_ms
        self.idle_resend_ms = idle_resend_ms
        self.last_rx_ms = -(10**9)
        self.rx_frames = 0
        self.tx_frames = 0
        self.events_resent = 0

    # -- receive ----------------------------------------------------------

    def feed(self, data: bytes, now_ms: int, clock: int) -> list[tuple[str, dict[str, object]]]:
        """Consume host bytes; return the commands the application must handle."""
        invalid_before = self._decoder.frames_invalid
        frames = self._decoder.feed(data)
        if self._decoder.frames_invalid != invalid_before and self.synced:
            self._nak_due = True  # something was damaged: ask for a resend now
        app: list[tuple[str, dict[str, object]]] = []
        for sbyte, payload in frames:
            self.rx_frames += 1
            self.last_rx_ms = now_ms
            seq = sbyte & codec.SEQ_MASK
            if sbyte & codec.FLAG_SYN:
                self.synced = True
                self.expected = seq
                self._resync_due = False
            elif not self.synced:
                self._resync_due = True
                continue
            if seq != self.expected:
                ahead = codec.seq_after(self.expected, seq)
                if ahead == 0 or ahead >= codec.SEQ_SPACE - codec.WINDOW:
                    self._ack_due = True  # a duplicate of something already taken
                else:
                    self._nak_due = True  # a gap: an earlier frame was lost
                continue
            self.expected = (self.expected + 1) & codec.SEQ_MASK
            self._ack_due = True
            try:
                messages = self.dictionary.decode_commands(payload)
            except ValueError as exc:
                self.send("error", {"code": codec.ERROR_BAD_PAYLOAD, "detail": str(exc)[:40]})
                continue
            for name, values in messages:
                if not self._handle_link_command(name, values, clock):
                    app.append((name, values))
        return app

    def _handle_link_command(self, name: str, values: dict[str, object], clock: int) -> bool:
        if name == "identify":
            offset = int(values["offset"])  # type: ignore[call-overload]
            count = min(int(values["count"]), codec.IDENTIFY_CHUNK)  # type: ignore[call-overload]
            chunk = self._identify[offset : offset + count]
            self.send("identify_response", {"offset": offset, "data": chunk})
            return True
        if name == "get_clock":
            self.send("clock", {"clock": clock})
            return True
        if name == "ack_events":
            upto = int(values["upto"])  # type: ignore[call-overload]
            self.queue = [e for e in self.queue if int(e[0]) > upto]  # type: ignore[call-overload]
            return True
        if name == "get_stats":
            self.send(
                "stats",
                {
                    "rx_frames": self.rx_frames,
                    "rx_invalid": self._decoder.frames_invalid,
                    "rx_bytes_invalid": self._decoder.bytes_invalid,
                    "tx_frames": self.tx_frames,
                    "events_resent": self.events_resent,
                    "events_queued": len(self.queue),
                },
            )
            return True
        return False

    # -- send -------------------------------------------------------------

    def send(self, name: str, values: dict[str, object]) -> None:
        """Queue an unreliable message (a response or a sample) for the next frame."""
        self._out.append(self.dictionary.encode_response(name, values))

    def emit_event(self, name: str, values: dict[str, object], now_ms: int) -> int:
        """Queue a reliable event; returns its eid, or 0 when the queue is full."""
        if len(self.queue) >= self.queue_capacity:
            return 0
        eid = self.next_eid
        self.next_eid = (self.next_eid + 1) & 0xFFFFFFFF or 1
        values["eid"] = eid
        encoded = self.dictionary.encode_response(name, values)
        self.queue.append([eid, encoded, now_ms])
        self._out.append(encoded)
        return eid

    def poll(self, now_ms: int) -> None:
        """Resend due events and flush everything queued as frames."""
        interval = self.resend_ms
        if now_ms - self.last_rx_ms > self.idle_resend_ms:
            interval = self.idle_resend_ms  # host silent: do not flood a dead line
        for entry in self.queue:
            if now_ms - int(entry[2]) >= interval:  # type: ignore[call-overload]
                entry[2] = now_ms
                self._out.append(entry[1])  # type: ignore[arg-type]
                self.events_resent += 1
        self._flush()

    def _flush(self) -> None:
        flags = 0
        if self._resync_due:
            flags = codec.FLAG_SYN
        elif self._nak_due:
            flags = codec.FLAG_NAK
        if not self._out and not flags and not self._ack_due:
            return
        payload = bytearray()
        frames: list[bytes] = []
        for msg in self._out:
            if len(payload) + len(msg) > codec.MAX_PAYLOAD:
                frames.append(codec.encode_frame(self.expected, payload, flags))
                payload = bytearray()
            payload.extend(msg)
        frames.append(codec.encode_frame(self.expected, payload, flags))
        self._out = []
        self._ack_due = False
        self._nak_due = False
        self._resync_due = False
        for frame in frames:
            self._write(frame)
            self.tx_frames += 1
