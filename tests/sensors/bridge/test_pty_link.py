"""The host driver against the emulated board over a real pseudo-terminal."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from cartos.sensors.bridge.client import BridgeClient, ScaleConfig, check_identify
from cartos.sensors.bridge.errors import ProtocolMismatchError
from cartos.sensors.bridge.events import BridgeEvent, LinkState, Scan, Settled, Tared
from firmware_bridge.emulator.board import Emulator


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[Emulator]:
    with Emulator(tmp_path / "cart-mcu", seed=3) as e:
        yield e


def connect(emu: Emulator, **kw: object) -> BridgeClient:
    cal = emu.calibration
    client = BridgeClient(
        str(emu.link_path),
        scale=ScaleConfig(cal.zero_counts, cal.span_counts, cal.span_grams),
        **kw,  # type: ignore[arg-type]
    ).start()
    assert client.wait_ready(10), client.stats().last_error
    return client


def collect(client: BridgeClient, until: float, done: object = None) -> list[BridgeEvent]:
    out: list[BridgeEvent] = []
    deadline = time.monotonic() + until
    while time.monotonic() < deadline:
        ev = client.get(0.05)
        if ev is not None:
            out.append(ev)
            if done is not None and done(out):  # type: ignore[operator]
                break
    return out


def scans_of(events: list[BridgeEvent]) -> Counter[str]:
    return Counter(e.code for e in events if isinstance(e, Scan))


def test_settled_weight_lines_up_with_host_time(emu: Emulator) -> None:
    client = connect(emu)
    try:
        time.sleep(0.8)  # empty basket settles first
        client.poll()
        placed_host = time.monotonic()
        emu.weight.place(emu.now(), 412.0)
        events = collect(client, 4, lambda ev: any(isinstance(e, Settled) for e in ev))
        settled = [e for e in events if isinstance(e, Settled)]
        assert len(settled) == 1
        s = settled[0]
        assert s.delta_g == pytest.approx(412.0, abs=2.0)
        # stamped with the start of the stable window: after the drop, before we saw it
        assert placed_host < s.t < placed_host + 1.0
        assert client.stats().clock_rtt_ms is not None
    finally:
        client.stop()


def test_scans_survive_a_bad_line_exactly_once(emu: Emulator) -> None:
    emu.to_host.ber = emu.from_host.ber = 5e-4
    emu.to_host.drop_rate = emu.from_host.drop_rate = 0.05
    client = connect(emu)
    try:
        codes = [f"{i:08d}" for i in range(40)]
        for i, code in enumerate(codes):
            emu.scanner.scan(code)
            if i % 10 == 0:
                emu.to_host.garbage(37)
            time.sleep(0.02)
        events = collect(client, 15, lambda ev: len(scans_of(ev)) == len(codes))
        got = scans_of(events)
        assert set(got) == set(codes)
        assert max(got.values()) == 1
        stats = client.stats()
        assert stats.bytes_invalid > 0 and stats.frames_invalid > 0
    finally:
        client.stop()


def test_unplug_replug_loses_no_event(emu: Emulator) -> None:
    client = connect(emu)
    try:
        emu.scanner.scan("11111111")
        first = collect(client, 5, lambda ev: "11111111" in scans_of(ev))
        emu.unplug()
        emu.scanner.scan("22222222")  # scanned while the cable is out
        time.sleep(0.3)
        emu.replug()
        emu.scanner.scan("33333333")
        rest = collect(client, 10, lambda ev: {"22222222", "33333333"} <= set(scans_of(ev)))
        got = scans_of(first + rest)
        assert got == Counter({"11111111": 1, "22222222": 1, "33333333": 1})
        states = [e.state for e in first + rest if isinstance(e, LinkState)]
        assert "disconnected" in states and states[-1] == "ready"
        assert client.stats().reconnects >= 1
    finally:
        client.stop()


def test_stalled_board_delivers_after_the_stall(emu: Emulator) -> None:
    client = connect(emu)
    try:
        emu.to_host.stall(0.6)
        emu.scanner.scan("44444444")
        events = collect(client, 5, lambda ev: "44444444" in scans_of(ev))
        assert scans_of(events)["44444444"] == 1
    finally:
        client.stop()


def test_board_reboot_is_detected_and_counter_restarts(emu: Emulator) -> None:
    client = connect(emu)
    try:
        emu.scanner.scan("55555555")
        collect(client, 5, lambda ev: "55555555" in scans_of(ev))
        boot_before = client.stats().boot_id
        emu.reboot()
        emu.scanner.scan("66666666")
        events = collect(client, 10, lambda ev: "66666666" in scans_of(ev))
        assert scans_of(events)["66666666"] == 1
        assert client.stats().boot_id != boot_before
    finally:
        client.stop()


def test_tare_round_trip(emu: Emulator) -> None:
    client = connect(emu)
    try:
        emu.weight.place(emu.now(), 250.0)
        time.sleep(1.2)
        token = client.tare()
        events = collect(client, 5, lambda ev: any(isinstance(e, Tared) for e in ev))
        tared = [e for e in events if isinstance(e, Tared)]
        assert [t.token for t in tared] == [token]
        time.sleep(0.3)
        sample = client.latest_sample
        assert sample is not None and abs(sample.weight_g) < 3.0
    finally:
        client.stop()


def test_mismatched_firmware_is_refused_naming_the_difference(emu: Emulator) -> None:
    doc = json.loads(emu.app.link._identify)
    doc["protocol"] = 2
    doc["responses"] = {k.replace("weight_mg=i", "weight_g=i"): v
                        for k, v in doc["responses"].items()}
    emu.app.link._identify = json.dumps(doc).encode()
    cal = emu.calibration
    client = BridgeClient(str(emu.link_path),
                          scale=ScaleConfig(cal.zero_counts, cal.span_counts, cal.span_grams))
    client.start()
    try:
        events = collect(client, 5, lambda ev: any(
            isinstance(e, LinkState) and e.state == "refused" for e in ev))
        refused = [e for e in events if isinstance(e, LinkState) and e.state == "refused"]
        assert refused, events
        assert "protocol version 2" in refused[0].detail
        assert "'settled'" in refused[0].detail and "weight_g" in refused[0].detail
        assert not client.ready.is_set()
    finally:
        client.stop()


def test_check_identify_accepts_the_real_dictionary() -> None:
    from firmware_bridge import codec
    from firmware_bridge.firmware.app import identify_document

    doc = json.loads(identify_document("x", 1, codec.default_dictionary()))
    assert check_identify(doc).responses["settled"].spec.startswith("settled eid=u")
    del doc["commands"]["tare token=u"]
    with pytest.raises(ProtocolMismatchError, match="command 'tare' missing"):
        check_identify(doc)


def test_missing_port_keeps_retrying_without_blocking(tmp_path: Path) -> None:
    client = BridgeClient(str(tmp_path / "nothing-here"), reconnect_max_backoff_s=0.1).start()
    try:
        t0 = time.monotonic()
        assert client.poll() == [] or True
        assert time.monotonic() - t0 < 0.05
        time.sleep(0.5)
        stats = client.stats()
        assert stats.state == "disconnected" and "nothing-here" in stats.last_error
    finally:
        client.stop()
