# The wire codec shared by the cart computer and the microcontroller.
#
# This one file is the protocol's only implementation: the host driver
# (cartos/sensors/bridge), the emulator and the MicroPython firmware all import
# it, so the two ends cannot drift apart. It therefore sticks to the Python
# subset MicroPython runs: no dataclasses, typing, enum or f-string tricks;
# annotations are written for mypy and ignored by MicroPython. PROTOCOL.md is
# the normative description; this module follows it section by section.
"""Framing (len, seq, payload, CRC-16/IBM-3740, sync), message encoding, dictionary."""

PROTOCOL_VERSION = 1

SYNC = 0x7E
HEADER_LEN = 2  # len, seq
TRAILER_LEN = 3  # crc16 (2, big-endian), sync
MIN_FRAME = HEADER_LEN + TRAILER_LEN  # an empty frame: a bare acknowledgement
MAX_FRAME = 64
MAX_PAYLOAD = MAX_FRAME - MIN_FRAME

SEQ_MASK = 0x0F
SEQ_MARK = 0x10  # always set: a cheap extra check on every frame
FLAG_NAK = 0x20  # MCU -> host: "I expected seq N; resend from N"
FLAG_SYN = 0x40  # host -> MCU: "adopt my seq"; MCU -> host: "I am not synced, resync me"
SEQ_RESERVED = 0x80  # must be zero
SEQ_SPACE = 16
WINDOW = 8  # at most this many unacknowledged host frames (half the sequence space)

# Fixed message ids: everything else is looked up in the identify dictionary.
ID_IDENTIFY = 0
ID_IDENTIFY_RESPONSE = 1


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes | bytearray | memoryview, start: int = 0, end: int = -1) -> int:
    """CRC-16/IBM-3740 (a.k.a. CCITT-FALSE): poly 0x1021, init 0xFFFF, no reflection.

    Its catalogue check value (CRC of b"123456789") is 0x29B1; a test pins it.
    """
    if end < 0:
        end = len(data)
    crc = 0xFFFF
    table = _CRC_TABLE
    for i in range(start, end):
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ data[i]) & 0xFF]
    return crc


def seq_byte(seq: int, flags: int = 0) -> int:
    return SEQ_MARK | flags | (seq & SEQ_MASK)


def encode_frame(seq: int, payload: bytes | bytearray, flags: int = 0) -> bytes:
    """One frame: ``len seq payload crc_hi crc_lo 0x7E``."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    n = len(payload) + MIN_FRAME
    # Built by appending: MicroPython has no bytearray slice assignment or deletion.
    out = bytearray()
    out.append(n)
    out.append(seq_byte(seq, flags))
    out.extend(payload)
    crc = crc16(out)
    out.append(crc >> 8)
    out.append(crc & 0xFF)
    out.append(SYNC)
    return bytes(out)


def _frame_at(buf: bytearray, pos: int) -> int:
    """Length of a valid frame starting at ``pos``; 0 if invalid; -1 if it needs more bytes."""
    n = buf[pos]
    if n < MIN_FRAME or n > MAX_FRAME:
        return 0
    s = buf[pos + 1] if pos + 1 < len(buf) else SEQ_MARK
    if (s & SEQ_MARK) == 0 or (s & SEQ_RESERVED):
        return 0
    if pos + n > len(buf):
        return -1
    if buf[pos + n - 1] != SYNC:
        return 0
    crc = crc16(buf, pos, pos + n - TRAILER_LEN)
    if buf[pos + n - 3] != (crc >> 8) or buf[pos + n - 2] != (crc & 0xFF):
        return 0
    return n


class FrameDecoder:
    """Turns a byte stream into frames, resynchronising after any damage.

    A candidate frame is accepted only when its length byte, sequence byte,
    sync byte and CRC all check. On any failure the decoder discards one byte
    and looks again, which reaches the next sync byte at the latest (the
    "discard to the next sync" rule) but also recovers a good frame that
    follows garbage without a sync byte of its own. The buffer never holds more
    than one maximum-size frame, so a stream of noise cannot grow memory.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.frames = 0
        self.bytes_invalid = 0
        self.frames_invalid = 0  # resynchronisation episodes

    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray) -> list[tuple[int, bytes]]:
        """Add received bytes; return complete frames as ``(seq_byte, payload)``."""
        buf = self._buf
        buf.extend(data)
        out: list[tuple[int, bytes]] = []
        pos = 0
        skipped = 0
        end = len(buf)
        while pos < end:
            n = _frame_at(buf, pos)
            if n > 0:
                if skipped:
                    self._count_invalid(skipped)
                    skipped = 0
                out.append((buf[pos + 1], bytes(buf[pos + HEADER_LEN : pos + n - TRAILER_LEN])))
                pos += n
                self.frames += 1
                continue
            if n < 0:
                # Incomplete candidate. If a complete valid frame starts later
                # in the buffer, the candidate was garbage: skip to that frame.
                later = self._complete_frame_after(buf, pos)
                if later < 0:
                    break
                skipped += later - pos
                pos = later
                continue
            skipped += 1
            pos += 1
        if skipped:
            self._count_invalid(skipped)
        if pos:
            self._buf = buf[pos:]  # a copy of at most 63 bytes (no slice deletion on MicroPython)
        return out

    def _complete_frame_after(self, buf: bytearray, start: int) -> int:
        for pos in range(start + 1, len(buf)):
            if _frame_at(buf, pos) > 0:
                return pos
        return -1

    def _count_invalid(self, nbytes: int) -> None:
        self.bytes_invalid += nbytes
        self.frames_invalid += 1

    def reset(self) -> None:
        self._buf = bytearray()


# -- message encoding ---------------------------------------------------------
#
# A payload holds one or more messages. Each message is its id followed by its
# parameters in the order the dictionary lists them. Integers are LEB128
# (unsigned, type "u") or zigzag LEB128 (signed, type "i"); byte strings
# (type "b") are an unsigned LEB128 length followed by the bytes.


def put_uint(out: bytearray, value: int) -> None:
    if value < 0 or value > 0xFFFFFFFF:
        raise ValueError(f"uint out of range: {value}")
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return


def put_int(out: bytearray, value: int) -> None:
    if value < -0x80000000 or value > 0x7FFFFFFF:
        raise ValueError(f"int out of range: {value}")
    put_uint(out, ((value << 1) ^ (value >> 31)) & 0xFFFFFFFF)


def get_uint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated integer")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 28:
            raise ValueError("integer longer than 5 bytes")
    if value > 0xFFFFFFFF:
        raise ValueError("integer exceeds 32 bits")
    return value, pos


def get_int(data: bytes, pos: int) -> tuple[int, int]:
    raw, pos = get_uint(data, pos)
    return (raw >> 1) ^ -(raw & 1), pos


class MessageFormat:
    """One message: ``name p1=u p2=i p3=b`` and its numeric id."""

    def __init__(self, msgid: int, spec: str) -> None:
        parts = spec.split()
        if not parts:
            raise ValueError("empty message format")
        self.msgid = msgid
        self.spec = " ".join(parts)
        self.name = parts[0]
        self.params: list[tuple[str, str]] = []
        for part in parts[1:]:
            key, _, kind = part.partition("=")
            if kind not in ("u", "i", "b") or not key:
                raise ValueError(f"bad parameter {part!r} in {spec!r}")
            self.params.append((key, kind))

    def encode(self, out: bytearray, values: dict[str, object]) -> None:
        put_uint(out, self.msgid)
        for key, kind in self.params:
            if key not in values:
                raise ValueError(f"{self.name}: missing parameter {key}")
            v = values[key]
            if kind == "u":
                put_uint(out, int(v))  # type: ignore[call-overload]
            elif kind == "i":
                put_int(out, int(v))  # type: ignore[call-overload]
            else:
                data = v.encode() if isinstance(v, str) else bytes(v)  # type: ignore[call-overload]
                put_uint(out, len(data))
                out.extend(data)

    def decode(self, data: bytes, pos: int) -> tuple[dict[str, object], int]:
        values: dict[str, object] = {}
        for key, kind in self.params:
            if kind == "u":
                values[key], pos = get_uint(data, pos)
            elif kind == "i":
                values[key], pos = get_int(data, pos)
            else:
                n, pos = get_uint(data, pos)
                if pos + n > len(data):
                    raise ValueError(f"{self.name}: truncated {key}")
                values[key] = bytes(data[pos : pos + n])
                pos += n
        return values, pos


class Dictionary:
    """The message catalogue of one firmware build, exchanged by ``identify``.

    ``commands`` go host -> MCU, ``responses`` MCU -> host; ids are unique per
    direction. The host never assumes ids: it looks every message up by name
    and checks its exact format, so it refuses mismatched firmware clearly.
    """

    def __init__(self, commands: dict[str, int], responses: dict[str, int]) -> None:
        self.commands: dict[str, MessageFormat] = {}
        self.responses: dict[str, MessageFormat] = {}
        self._cmd_by_id: dict[int, MessageFormat] = {}
        self._resp_by_id: dict[int, MessageFormat] = {}
        for spec, msgid in commands.items():
            fmt = MessageFormat(msgid, spec)
            self.commands[fmt.name] = fmt
            self._cmd_by_id[msgid] = fmt
        for spec, msgid in responses.items():
            fmt = MessageFormat(msgid, spec)
            self.responses[fmt.name] = fmt
            self._resp_by_id[msgid] = fmt

    def encode_command(self, name: str, values: dict[str, object]) -> bytes:
        out = bytearray()
        self.commands[name].encode(out, values)
        return bytes(out)

    def encode_response(self, name: str, values: dict[str, object]) -> bytes:
        out = bytearray()
        self.responses[name].encode(out, values)
        return bytes(out)

    def decode_commands(self, payload: bytes) -> list[tuple[str, dict[str, object]]]:
        return _decode_all(payload, self._cmd_by_id)

    def decode_responses(self, payload: bytes) -> list[tuple[str, dict[str, object]]]:
        return _decode_all(payload, self._resp_by_id)

    def specs(self) -> tuple[dict[str, int], dict[str, int]]:
        return (
            {f.spec: f.msgid for f in self.commands.values()},
            {f.spec: f.msgid for f in self.responses.values()},
        )


def _decode_all(
    payload: bytes, by_id: dict[int, MessageFormat]
) -> list[tuple[str, dict[str, object]]]:
    """Decode every message in a payload; raises ValueError on unknown ids or truncation."""
    out: list[tuple[str, dict[str, object]]] = []
    pos = 0
    while pos < len(payload):
        msgid, pos = get_uint(payload, pos)
        fmt = by_id.get(msgid)
        if fmt is None:
            raise ValueError(f"unknown message id {msgid}")
        values, pos = fmt.decode(payload, pos)
        out.append((fmt.name, values))
    return out


# The messages of protocol version 1. Firmware may add messages; the host
# requires these names with exactly these formats.
COMMANDS = {
    "identify offset=u count=u": ID_IDENTIFY,
    "get_clock": 2,
    "ack_events upto=u": 3,
    "config_scale zero_counts=i span_counts=i span_mg=u capacity_mg=u tolerance_mg=u"
    " window_ms=u min_delta_mg=u": 4,
    "tare token=u": 5,
    "set_stream every=u": 6,
    "get_stats": 7,
    "feedback pattern=u": 8,
}

RESPONSES = {
    "identify_response offset=u data=b": ID_IDENTIFY_RESPONSE,
    "clock clock=u": 2,
    "sample clock=u weight_mg=i raw=i state=u": 3,
    "settled eid=u clock=u weight_mg=i delta_mg=i": 4,
    "scan eid=u clock=u code=b": 5,
    "scale_state eid=u clock=u state=u": 6,
    "tared eid=u clock=u token=u": 7,
    "stats rx_frames=u rx_invalid=u rx_bytes_invalid=u tx_frames=u events_resent=u"
    " events_queued=u": 8,
    "error code=u detail=b": 9,
}

# Reliable MCU -> host events: they carry ``eid`` and are resent until acked.
EVENT_MESSAGES = ("settled", "scan", "scale_state", "tared")

SCALE_STATES = ("ok", "unstable", "overload", "disconnected")

ERROR_UNKNOWN_COMMAND = 1
ERROR_BAD_PAYLOAD = 2
ERROR_NOT_CONFIGURED = 3
ERROR_QUEUE_FULL = 4

FEEDBACK_GOOD = 1
FEEDBACK_BAD = 2
FEEDBACK_ATTENTION = 3


def default_dictionary() -> Dictionary:
    return Dictionary(COMMANDS, RESPONSES)


IDENTIFY_FORMAT = MessageFormat(ID_IDENTIFY, "identify offset=u count=u")
IDENTIFY_RESPONSE_FORMAT = MessageFormat(ID_IDENTIFY_RESPONSE, "identify_response offset=u data=b")
IDENTIFY_CHUNK = 40  # dictionary bytes per identify_response (fits one frame)


def seq_after(a: int, b: int) -> int:
    """How far ``b`` is ahead of ``a`` in the 16-value sequence space (0..15)."""
    return (b - a) & SEQ_MASK
