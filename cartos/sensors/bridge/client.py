"""The host driver for the cart microcontroller, over pyserial.

A background thread owns the port: it frames and resends commands, maps MCU
time to host time, deduplicates and orders events, and reopens the port when
it disappears (a USB replug), backing off between tries. The runtime's loop
only ever calls non-blocking methods (``poll``, ``tare``, ``stats``): a dead
or slow board can never stall it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import select
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import serial

from cartos.sensors.bridge.clocksync import ClockSync
from cartos.sensors.bridge.errors import HandshakeTimeoutError, ProtocolMismatchError
from cartos.sensors.bridge.events import (
    BridgeEvent,
    LinkState,
    Sample,
    ScaleState,
    Scan,
    Settled,
    Tared,
)
from cartos.sensors.bridge.transport import HostTransport, TransportStats
from firmware_bridge import codec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScaleConfig:
    """What the host tells the MCU about this cart's load cell (from the device profile)."""

    zero_counts: int
    span_counts: int
    span_grams: float
    capacity_g: float = 30_000.0
    tolerance_g: float = 2.0
    window_ms: int = 400
    min_delta_g: float = 3.0


@dataclass
class LinkStats:
    """Everything an operator needs to judge the link's health."""

    state: str = "connecting"
    connects: int = 0
    reconnects: int = 0
    bytes_received: int = 0
    bytes_invalid: int = 0
    frames_received: int = 0
    frames_invalid: int = 0
    undecodable_payloads: int = 0
    events_delivered: int = 0
    events_duplicate: int = 0
    samples: int = 0
    clock_rtt_ms: float | None = None
    clock_rate: float = 1.0
    transport: TransportStats = field(default_factory=TransportStats)
    mcu: dict[str, int] = field(default_factory=dict)
    firmware: str = ""
    boot_id: int | None = None
    last_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SerialLike(Protocol):
    def fileno(self) -> int: ...
    def read(self, size: int = 1) -> bytes: ...
    def write(self, data: bytes) -> int | None: ...
    def close(self) -> None: ...
    @property
    def in_waiting(self) -> int: ...


def open_serial(port: str, baud: int) -> SerialLike:
    return serial.Serial(port=port, baudrate=baud, timeout=0, write_timeout=0.5, exclusive=True)  # type: ignore[no-any-return]


REQUIRED_COMMANDS = {spec.split()[0]: spec for spec in codec.COMMANDS}
REQUIRED_RESPONSES = {spec.split()[0]: spec for spec in codec.RESPONSES}


def check_identify(doc: dict[str, Any]) -> codec.Dictionary:
    """Build the dictionary from an identify document, or refuse mismatched firmware."""
    problems = []
    if doc.get("protocol") != codec.PROTOCOL_VERSION:
        problems.append(
            f"protocol version {doc.get('protocol')!r}, this host speaks {codec.PROTOCOL_VERSION}"
        )
    commands = doc.get("commands") or {}
    responses = doc.get("responses") or {}
    have_c = {spec.split()[0]: " ".join(spec.split()) for spec in commands}
    have_r = {spec.split()[0]: " ".join(spec.split()) for spec in responses}
    for want, have, what in ((REQUIRED_COMMANDS, have_c, "command"),
                             (REQUIRED_RESPONSES, have_r, "response")):
        for name, spec in want.items():
            if name not in have:
                problems.append(f"{what} {name!r} missing (expected {spec!r})")
            elif have[name] != " ".join(spec.split()):
                problems.append(f"{what} {name!r} is {have[name]!r}, expected {spec!r}")
    if problems:
        firmware = doc.get("firmware", "?")
        raise ProtocolMismatchError(
            f"firmware {firmware!r} does not match this host: " + "; ".join(problems)
        )
    try:
        return codec.Dictionary(commands, responses)
    except ValueError as exc:
        raise ProtocolMismatchError(f"firmware dictionary is malformed: {exc}") from exc


class BridgeClient:
    """Owns the serial port to the cart microcontroller; thread-safe, non-blocking API."""

    def __init__(
        self,
        port: str,
        baud: int = 460_800,
        scale: ScaleConfig | None = None,
        clock_sync_interval_s: float = 1.0,
        stream_every: int = 8,
        reconnect_max_backoff_s: float = 2.0,
        handshake_timeout_s: float = 3.0,
        opener: Callable[[str, int], SerialLike] = open_serial,
        on_sample: Callable[[Sample], None] | None = None,
    ) -> None:
        self.port = port
        self.baud = baud
        self.scale = scale
        self.clock_sync_interval_s = clock_sync_interval_s
        self.stream_every = stream_every
        self.reconnect_max_backoff_s = reconnect_max_backoff_s
        self.handshake_timeout_s = handshake_timeout_s
        self._opener = opener
        self._on_sample = on_sample
        self._events: queue.Queue[BridgeEvent] = queue.Queue()
        self._commands: queue.Queue[tuple[str, dict[str, object]]] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stats = LinkStats()
        self._stats_lock = threading.Lock()
        self.clock = ClockSync()
        self.latest_sample: Sample | None = None
        self.identify_doc: dict[str, Any] = {}
        self._boot_id: int | None = None
        self._delivered = 0  # highest eid handed to the runtime (in order)
        self._held: dict[int, tuple[str, dict[str, object]]] = {}  # out-of-order eids
        self._tare_token = int(time.time()) & 0xFFFF
        self._pending_tares: set[int] = set()
        self.ready = threading.Event()

    # -- public, non-blocking -------------------------------------------------

    def start(self) -> BridgeClient:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mcu-bridge", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> BridgeClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def poll(self, max_items: int = 1000) -> list[BridgeEvent]:
        """Events received since the last call, in order; never blocks."""
        out: list[BridgeEvent] = []
        while len(out) < max_items:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                break
        return out

    def get(self, timeout: float) -> BridgeEvent | None:
        """Wait up to ``timeout`` for one event (tests and tools; the runtime polls)."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    def tare(self) -> int:
        """Ask the scale to zero at its next stable reading; a ``Tared`` event follows."""
        self._tare_token = (self._tare_token + 1) & 0xFFFFFFFF
        token = self._tare_token
        self._pending_tares.add(token)
        self._commands.put(("tare", {"token": token}))
        return token

    def feedback(self, pattern: int) -> None:
        """Beep/flash on the scanner: codec.FEEDBACK_GOOD, _BAD or _ATTENTION."""
        self._commands.put(("feedback", {"pattern": pattern}))

    def stats(self) -> LinkStats:
        with self._stats_lock:
            return LinkStats(**{**asdict(self._stats), "transport": TransportStats(
                **asdict(self._stats.transport))})

    def wait_ready(self, timeout: float) -> bool:
        return self.ready.wait(timeout)

    # -- the port thread --------------------------------------------------------

    def _set_state(self, state: str, detail: str = "") -> None:
        with self._stats_lock:
            changed = self._stats.state != state
            self._stats.state = state
            if detail:
                self._stats.last_error = detail
        if state == "ready":
            self.ready.set()
        else:
            self.ready.clear()
        if changed:
            self._events.put(LinkState(state, detail))

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            try:
                port = self._opener(self.port, self.baud)
            except (OSError, serial.SerialException) as exc:
                self._set_state("disconnected", f"open {self.port}: {exc}")
                self._stop.wait(backoff)
                backoff = min(self.reconnect_max_backoff_s, backoff * 2)
                continue
            backoff = 0.05
            with self._stats_lock:
                self._stats.connects += 1
                if self._stats.connects > 1:
                    self._stats.reconnects += 1
            try:
                self._session(port)
            except ProtocolMismatchError as exc:
                log.error("%s", exc)
                self._set_state("refused", str(exc))
                self._stop.wait(self.reconnect_max_backoff_s)
            except (OSError, serial.SerialException, HandshakeTimeoutError) as exc:
                if self._stop.is_set():
                    break
                log.warning("mcu link %s lost: %s", self.port, exc)
                self._set_state("disconnected", str(exc))
                self._stop.wait(0.05)
            finally:
                with contextlib.suppress(OSError, serial.SerialException):
                    port.close()

    def _session(self, port: SerialLike) -> None:
        """One connection: handshake, then pump until the port fails or we stop."""
        self._set_state("connecting")
        session = _Session(self, port)
        session.handshake()
        self._set_state("ready")
        session.pump_forever()

    # -- called from the session ---------------------------------------------------

    def _on_identified(self, doc: dict[str, Any]) -> None:
        boot_id = doc.get("boot_id")
        if boot_id != self._boot_id:
            # A different boot: its event counter restarted and its clock too.
            self._boot_id = boot_id if isinstance(boot_id, int) else None
            self._delivered = 0
            self._held.clear()
            self.clock.reset()
        self.identify_doc = doc
        with self._stats_lock:
            self._stats.firmware = str(doc.get("firmware", ""))
            self._stats.boot_id = self._boot_id

    def _accept_event(self, name: str, values: dict[str, object]) -> bool:
        """Deduplicate and order one event; True if the MCU should be acked now."""
        eid = int(values["eid"])  # type: ignore[call-overload]
        if eid <= self._delivered or eid in self._held:
            with self._stats_lock:
                self._stats.events_duplicate += 1
            return True
        if eid - self._delivered > 4096:
            return False  # nonsense from a confused board: do not ack beyond what we hold
        self._held[eid] = (name, values)
        while self._delivered + 1 in self._held:
            self._delivered += 1
            n, v = self._held.pop(self._delivered)
            self._events.put(self._to_event(n, v))
            with self._stats_lock:
                self._stats.events_delivered += 1
        return True

    def _to_event(self, name: str, v: dict[str, object]) -> BridgeEvent:
        clock32 = int(v["clock"])  # type: ignore[call-overload]
        t = self.clock.to_host(clock32)
        eid = int(v["eid"])  # type: ignore[call-overload]
        if name == "settled":
            return Settled(eid, t, clock32, int(v["weight_mg"]) / 1000.0,  # type: ignore[call-overload]
                           int(v["delta_mg"]) / 1000.0)  # type: ignore[call-overload]
        if name == "scan":
            code = bytes(v["code"]).decode("ascii", errors="replace")  # type: ignore[call-overload]
            return Scan(eid, t, clock32, code)
        if name == "tared":
            self._pending_tares.discard(int(v["token"]))  # type: ignore[call-overload]
            return Tared(eid, t, clock32, int(v["token"]))  # type: ignore[call-overload]
        state = int(v["state"])  # type: ignore[call-overload]
        label = codec.SCALE_STATES[state] if state < len(codec.SCALE_STATES) else f"state{state}"
        return ScaleState(eid, t, clock32, label)

    def _handle_sample(self, v: dict[str, object]) -> None:
        clock32 = int(v["clock"])  # type: ignore[call-overload]
        state = int(v["state"])  # type: ignore[call-overload]
        sample = Sample(
            self.clock.to_host(clock32), clock32, int(v["weight_mg"]) / 1000.0,  # type: ignore[call-overload]
            int(v["raw"]),  # type: ignore[call-overload]
            codec.SCALE_STATES[state] if state < len(codec.SCALE_STATES) else f"state{state}",
        )
        self.latest_sample = sample
        with self._stats_lock:
            self._stats.samples += 1
        if self._on_sample is not None:
            self._on_sample(sample)


class _Session:
    """State of one open port; discarded on disconnect."""

    def __init__(self, client: BridgeClient, port: SerialLike) -> None:
        self.client = client
        self.port = port
        self.fd = port.fileno()
        self.decoder = codec.FrameDecoder()
        self.transport = HostTransport(self._write, time.monotonic)
        self.dictionary = codec.default_dictionary()  # replaced by the board's own
        self.identify_buf = bytearray()
        self.identify_done = False
        self.clock_sent: float | None = None
        self.next_clock_sync = 0.0
        self.next_stats = 0.0
        self.ack_due = False
        self.identify_sent = 0.0
        self.early_events: list[tuple[str, dict[str, object]]] = []

    def _write(self, frame: bytes) -> None:
        self.port.write(frame)

    def _send(self, name: str, values: dict[str, object]) -> None:
        self.transport.send(self.dictionary.encode_command(name, values))

    # -- receive ---------------------------------------------------------------

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return
        data = self.port.read(max(1, self.port.in_waiting))
        if not data:
            raise serial.SerialException("port returned no data (device gone)")
        inv_frames, inv_bytes = self.decoder.frames_invalid, self.decoder.bytes_invalid
        frames = self.decoder.feed(data)
        c = self.client
        with c._stats_lock:
            c._stats.bytes_received += len(data)
            c._stats.frames_received += len(frames)
            c._stats.frames_invalid += self.decoder.frames_invalid - inv_frames
            c._stats.bytes_invalid += self.decoder.bytes_invalid - inv_bytes
        for sbyte, payload in frames:
            if sbyte & codec.FLAG_SYN:
                # The board lost our numbering (it rebooted): start over.
                raise _ResyncRequestedError()
            self.transport.on_frame(sbyte)
            try:
                messages = self.dictionary.decode_responses(payload)
            except ValueError:
                with c._stats_lock:
                    c._stats.undecodable_payloads += 1
                continue
            for name, values in messages:
                self._message(name, values)

    def _message(self, name: str, values: dict[str, object]) -> None:
        c = self.client
        if name == "identify_response":
            offset = int(values["offset"])  # type: ignore[call-overload]
            if offset == len(self.identify_buf):
                data = bytes(values["data"])  # type: ignore[call-overload]
                self.identify_buf.extend(data)
                if len(data) < codec.IDENTIFY_CHUNK:
                    self.identify_done = True
                self._request_identify()
        elif name == "clock":
            if self.clock_sent is not None:
                c.clock.add(self.clock_sent, time.monotonic(), int(values["clock"]))  # type: ignore[call-overload]
                self.clock_sent = None
                with c._stats_lock:
                    rtt = c.clock.best_rtt
                    c._stats.clock_rtt_ms = None if rtt is None else rtt * 1000
                    c._stats.clock_rate = c.clock.rate
        elif name in codec.EVENT_MESSAGES:
            if not self.identify_done or not c.clock.synced:
                self.early_events.append((name, values))
            elif c._accept_event(name, values):
                self.ack_due = True
        elif name == "sample":
            if c.clock.synced:
                c._handle_sample(values)
        elif name == "stats":
            with c._stats_lock:
                c._stats.mcu = {k: int(v) for k, v in values.items()}  # type: ignore[call-overload]
        elif name == "error":
            log.warning("mcu error %s: %s", values.get("code"), values.get("detail"))

    def _request_identify(self) -> None:
        if not self.identify_done:
            self.transport.send(codec.default_dictionary().encode_command(
                "identify", {"offset": len(self.identify_buf), "count": codec.IDENTIFY_CHUNK}))
            self.identify_sent = time.monotonic()

    # -- phases ----------------------------------------------------------------

    def handshake(self) -> None:
        timeout = self.client.handshake_timeout_s
        deadline = time.monotonic() + timeout
        self.transport.reset()
        self._request_identify()
        while not self.identify_done:
            have = len(self.identify_buf)
            self._step(deadline)
            if len(self.identify_buf) != have:
                deadline = time.monotonic() + timeout  # progressing: a noisy line, not a dead one
            if time.monotonic() - self.identify_sent > 0.1 and self.transport.idle:
                self._request_identify()  # the response was lost: ask again
        try:
            doc = json.loads(bytes(self.identify_buf).decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ProtocolMismatchError(f"identify document is not JSON: {exc}") from exc
        self.dictionary = check_identify(doc)
        c = self.client
        c._on_identified(doc)
        self._configure()
        while not c.clock.synced:
            self._step(deadline)
            self._clock_sync(force_every=0.05)
        for name, values in self.early_events:
            if c._accept_event(name, values):
                self.ack_due = True
        self.early_events.clear()

    def _configure(self) -> None:
        c = self.client
        if c.scale is not None:
            s = c.scale
            self._send("config_scale", {
                "zero_counts": s.zero_counts, "span_counts": s.span_counts,
                "span_mg": round(s.span_grams * 1000), "capacity_mg": round(s.capacity_g * 1000),
                "tolerance_mg": round(s.tolerance_g * 1000), "window_ms": s.window_ms,
                "min_delta_mg": round(s.min_delta_g * 1000),
            })
        self._send("set_stream", {"every": c.stream_every})
        for token in sorted(c._pending_tares):
            self._send("tare", {"token": token})

    def _clock_sync(self, force_every: float | None = None) -> None:
        now = time.monotonic()
        interval = force_every if force_every is not None else self.client.clock_sync_interval_s
        if self.clock_sent is not None and now - self.clock_sent < 0.5:
            return  # one request in flight at a time (a lost reply times out)
        if now >= self.next_clock_sync:
            self.next_clock_sync = now + interval
            # get_clock goes straight out, not behind queued commands, so the
            # round trip measures the line and not our own queue.
            if self.transport.outstanding == 0:
                self._send("get_clock", {})
                self.clock_sent = now
                self.transport.poll()

    def _step(self, deadline: float | None = None) -> None:
        if self.client._stop.is_set():
            raise OSError("bridge stopping")
        if deadline is not None and time.monotonic() > deadline:
            raise HandshakeTimeoutError(
                f"{self.client.port}: no identify answer within "
                f"{self.client.handshake_timeout_s:.1f} s (is the firmware running?)"
            )
        try:
            self._read(0.005)
        except _ResyncRequestedError:
            self.transport.resync()
            raise HandshakeTimeoutError("board rebooted; reconnecting") from None
        if self.ack_due and self.transport.synced:
            self._send("ack_events", {"upto": self.client._delivered})
            self.ack_due = False
        self.transport.poll()
        with self.client._stats_lock:
            self.client._stats.transport = TransportStats(**asdict(self.transport.stats))

    def pump_forever(self) -> None:
        c = self.client
        while True:
            while True:
                try:
                    name, values = c._commands.get_nowait()
                except queue.Empty:
                    break
                self._send(name, values)
            self._clock_sync()
            now = time.monotonic()
            if now >= self.next_stats:
                self.next_stats = now + 5.0
                self._send("get_stats", {})
            self._step()


class _ResyncRequestedError(Exception):
    """The MCU asked for a SYN: it lost its link state."""
