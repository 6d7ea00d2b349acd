"""Host transport against the real MCU link code over a simulated lossy line.

Every command must reach the MCU exactly once and in order, whatever the line
loses or corrupts; the RTO estimator must follow RFC 6298.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartos.sensors.bridge.transport import HostTransport, RtoEstimator
from firmware_bridge import codec
from firmware_bridge.mcu_link import McuLink


class Line:
    """A line that drops, flips and delays nothing but order (a serial cable)."""

    def __init__(self, rng: random.Random, drop: float, ber: float) -> None:
        self.rng, self.drop, self.ber = rng, drop, ber
        self.buf = bytearray()

    def write(self, data: bytes) -> None:
        if self.rng.random() < self.drop:
            return
        out = bytearray(data)
        for i in range(len(out)):
            for bit in range(8):
                if self.rng.random() < self.ber:
                    out[i] ^= 1 << bit
        self.buf.extend(out)

    def take(self) -> bytes:
        data = bytes(self.buf)
        self.buf.clear()
        return data


def run_link(n_cmds: int, drop: float, ber: float, seed: int) -> tuple[list[int], HostTransport]:
    rng = random.Random(seed)
    clock = [0.0]
    to_mcu, to_host = Line(rng, drop, ber), Line(rng, drop, ber)
    host = HostTransport(to_mcu.write, lambda: clock[0])
    d = codec.default_dictionary()
    mcu = McuLink(to_host.write, b"{}", d)
    dec = codec.FrameDecoder()
    for token in range(n_cmds):
        host.send(d.encode_command("tare", {"token": token}))
    got: list[int] = []
    for _ in range(20000):
        clock[0] += 0.001
        host.poll()
        for name, values in mcu.feed(to_mcu.take(), int(clock[0] * 1000), 0):
            assert name == "tare"
            got.append(int(values["token"]))  # type: ignore[call-overload]
        if rng.random() < 0.5:  # the MCU answers every other tick, like a busy loop
            mcu.poll(int(clock[0] * 1000))
        for sbyte, _payload in dec.feed(to_host.take()):
            if sbyte & codec.FLAG_SYN:
                host.resync()
            else:
                host.on_frame(sbyte)
        if host.idle and len(got) >= n_cmds:
            break
    return got, host


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 60), st.sampled_from([0.0, 0.05, 0.2]), st.sampled_from([0.0, 1e-3]),
       st.integers(0, 10_000))
def test_commands_arrive_exactly_once_in_order(n: int, drop: float, ber: float, seed: int) -> None:
    got, host = run_link(n, drop, ber, seed)
    if host.stats.resyncs == 0:
        assert got == list(range(n))
    else:  # a re-SYN resends what was unacknowledged: idempotent commands, in order
        assert list(dict.fromkeys(got)) == list(range(n))
    assert host.idle


def test_lossy_line_is_repaired_by_retransmission_and_counted() -> None:
    got, host = run_link(200, 0.1, 1e-3, 1)
    assert got == list(range(200))
    assert host.stats.frames_retransmitted > 0
    assert host.stats.srtt_ms is not None


def test_clean_line_needs_no_retransmission() -> None:
    got, host = run_link(100, 0.0, 0.0, 2)
    assert got == list(range(100))
    assert host.stats.frames_retransmitted == 0 and host.stats.timeouts == 0


def test_rto_follows_rfc6298() -> None:
    r = RtoEstimator(min_rto=0.001, max_rto=10.0, granularity=0.0)
    r.sample(0.1)
    assert r.srtt == pytest.approx(0.1) and r.rttvar == pytest.approx(0.05)
    assert r.rto == pytest.approx(0.1 + 4 * 0.05)
    r.sample(0.2)
    assert r.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.1)
    assert r.srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.2)
    before = r.rto
    r.back_off()
    assert r.rto == pytest.approx(2 * before)
    for _ in range(20):
        r.back_off()
    assert r.rto == 10.0


def test_window_is_bounded() -> None:
    sent: list[bytes] = []
    host = HostTransport(sent.append, lambda: 0.0)
    d = codec.default_dictionary()
    for token in range(100):
        host.send(d.encode_command("tare", {"token": token}) + bytes(50))  # one frame each
    host.poll()  # SYN goes alone first
    assert len(sent) == 1 and sent[0][1] & codec.FLAG_SYN
    host.on_frame(codec.seq_byte(1))  # SYN acknowledged
    host.poll()
    assert host.outstanding == codec.WINDOW
