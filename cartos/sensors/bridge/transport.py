"""Host end of the link layer: sequence numbers, window, ack/nak, retransmission.

Pure logic with an injected clock and writer, so it is tested without a port.
Host -> MCU frames are numbered modulo 16 and at most ``WINDOW`` may be
unacknowledged. Every MCU frame acknowledges by carrying the next sequence
number the MCU expects. A NAK, or no acknowledgement within the
retransmission timeout, resends every outstanding frame (go-back-N). The
timeout follows RFC 6298 (smoothed RTT and variance, Karn's rule, doubling
back-off) with bounds suited to a serial line rather than the internet.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from firmware_bridge import codec

# Timeouts in a row (no acknowledgement at all) before the link re-SYNs. A re-SYN
# resends unacknowledged commands the MCU may already have executed, so it is kept
# for a link that is really lost (~7 s at the RTO cap), not merely noisy.
STUCK_ROUNDS = 30


@dataclass
class _Outstanding:
    seq: int
    payload: bytes
    frame: bytes
    sent_at: float
    retransmitted: bool = False


@dataclass
class TransportStats:
    frames_sent: int = 0
    bytes_sent: int = 0
    frames_retransmitted: int = 0
    bytes_retransmitted: int = 0
    naks_received: int = 0
    timeouts: int = 0
    resyncs: int = 0
    srtt_ms: float | None = None
    rttvar_ms: float | None = None
    rto_ms: float = 0.0


@dataclass
class RtoEstimator:
    """RFC 6298 retransmission timeout, in seconds."""

    min_rto: float = 0.02
    max_rto: float = 0.25
    initial_rto: float = 0.25
    granularity: float = 0.002
    srtt: float | None = None
    rttvar: float = 0.0
    rto: float = field(init=False)

    def __post_init__(self) -> None:
        self.rto = self.initial_rto

    def sample(self, rtt: float) -> None:
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2.0
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.rto = self._clamp(self.srtt + max(self.granularity, 4.0 * self.rttvar))

    def back_off(self) -> None:
        self.rto = self._clamp(self.rto * 2.0)

    def _clamp(self, value: float) -> float:
        return min(self.max_rto, max(self.min_rto, value))


class HostTransport:
    """Numbering, windowing and retransmission of host -> MCU messages."""

    def __init__(self, write: Callable[[bytes], None], now: Callable[[], float]) -> None:
        self._write = write
        self._now = now
        self.rto = RtoEstimator()
        self.stats = TransportStats(rto_ms=self.rto.rto * 1000)
        self._pending: deque[bytes] = deque()  # encoded messages not yet framed
        self._outstanding: deque[_Outstanding] = deque()
        self._next_seq = 0
        self._syn = True  # after (re)connect, an empty SYN frame tells the MCU our numbering
        self._syncing = False
        self._last_retransmit = -1.0
        self._no_progress = 0  # retransmission rounds without an acknowledgement

    def reset(self) -> None:
        """Forget the link state (reconnect or MCU reboot); the next frame carries SYN."""
        self._pending.clear()
        self._outstanding.clear()
        self._syn = True
        self._syncing = False
        self._next_seq = 0

    def resync(self) -> None:
        """Re-send SYN, keeping unacknowledged messages (they are resent after it).

        Used when the MCU asks for it (it rebooted) or when retransmissions stop
        making progress. Every command is idempotent (``tare`` carries a token),
        so a message the MCU did execute before the resync is harmless to repeat.
        """
        for entry in reversed(self._outstanding):
            if entry.payload:
                self._pending.appendleft(entry.payload)
        self._outstanding.clear()
        self._syn = True
        self._syncing = False
        self._no_progress = 0
        self.stats.resyncs += 1

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    @property
    def idle(self) -> bool:
        return not self._pending and not self._outstanding and not self._syn

    @property
    def synced(self) -> bool:
        """The MCU has acknowledged our SYN: data frames can flow."""
        return not self._syn and not self._syncing

    def send(self, message: bytes) -> None:
        """Queue one encoded message; frames go out in ``poll``."""
        self._pending.append(message)

    def on_frame(self, seq_byte: int) -> None:
        """Process the acknowledgement carried by any MCU frame."""
        ack = seq_byte & codec.SEQ_MASK
        now = self._now()
        if self._outstanding:
            oldest = self._outstanding[0].seq
            acked = codec.seq_after(oldest, ack)
            if 0 < acked <= len(self._outstanding):
                newest_clean: _Outstanding | None = None
                for _ in range(acked):
                    entry = self._outstanding.popleft()
                    if not entry.retransmitted:
                        newest_clean = entry
                if newest_clean is not None:  # Karn: never time a retransmitted frame
                    self.rto.sample(now - newest_clean.sent_at)
                self._syncing = False
                self._no_progress = 0
        if seq_byte & codec.FLAG_NAK and self._outstanding:
            self.stats.naks_received += 1
            # One go-back-N per round trip: a burst of NAKs for the same loss
            # must not multiply the resend traffic.
            guard = (self.rto.srtt or self.rto.min_rto) / 2.0
            if now - self._last_retransmit >= guard:
                self._retransmit_all(now)
        self._update_stats()

    def poll(self) -> None:
        """Send what the window allows and retransmit on timeout."""
        now = self._now()
        if self._outstanding and now - self._outstanding[0].sent_at >= self.rto.rto:
            self.stats.timeouts += 1
            self.rto.back_off()
            self._retransmit_all(now, timeout=True)
        if self._syn:
            # The SYN frame travels alone and must be acknowledged before any
            # data: a resent SYN arriving after data frames would renumber the
            # MCU's expectations and let it execute them twice.
            self._syn = False
            self._syncing = True
            self._transmit(b"", codec.FLAG_SYN, now)
        while self._pending and not self._syncing and len(self._outstanding) < codec.WINDOW:
            payload = bytearray()
            while self._pending and len(payload) + len(self._pending[0]) <= codec.MAX_PAYLOAD:
                payload.extend(self._pending.popleft())
            if not payload:  # a single message larger than a frame: a caller bug
                raise ValueError(f"message of {len(self._pending[0])} bytes exceeds a frame")
            self._transmit(bytes(payload), 0, now)
        self._update_stats()

    def _transmit(self, payload: bytes, flags: int, now: float) -> None:
        frame = codec.encode_frame(self._next_seq, payload, flags)
        self._outstanding.append(_Outstanding(self._next_seq, payload, frame, now))
        self._next_seq = (self._next_seq + 1) & codec.SEQ_MASK
        self._write(frame)
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(frame)

    def _retransmit_all(self, now: float, timeout: bool = False) -> None:
        if timeout:
            self._no_progress += 1
            if self._no_progress > STUCK_ROUNDS:
                self.resync()
                return
        self._last_retransmit = now
        for entry in self._outstanding:
            entry.sent_at = now
            entry.retransmitted = True
            self._write(entry.frame)
            self.stats.frames_retransmitted += 1
            self.stats.bytes_retransmitted += len(entry.frame)
            self.stats.frames_sent += 1
            self.stats.bytes_sent += len(entry.frame)

    def _update_stats(self) -> None:
        self.stats.rto_ms = self.rto.rto * 1000
        if self.rto.srtt is not None:
            self.stats.srtt_ms = self.rto.srtt * 1000
            self.stats.rttvar_ms = self.rto.rttvar * 1000
