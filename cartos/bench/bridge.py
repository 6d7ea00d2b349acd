"""``cartos bench bridge``: the serial link under bit errors, end to end over a real pty.

The emulated board streams a weight sample in every frame and emits scan
events at a steady rate while the line flips bits in both directions. The
emulator records every value before the line touches it, so each reading the
host accepts is checked against the truth: a corrupt reading that passed the
CRC, a scan that never arrived and a scan delivered twice are all counted.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cartos.sensors.bridge.client import BridgeClient, ScaleConfig
from cartos.sensors.bridge.events import Sample, Scan
from firmware_bridge.emulator.board import Emulator


def run(
    ber: float,
    frames: int,
    scan_every_s: float = 0.01,
    seed: int = 0,
    log: Callable[[str], None] = lambda _m: None,
    timeout_s: float = 1800.0,
    min_events: int = 0,
) -> dict[str, Any]:
    """``min_events``: go on past ``frames`` until the board has sent at least this many scan
    events, so a slow or loaded machine (fewer scans accepted per frame) still measures loss
    over enough scans."""
    with tempfile.TemporaryDirectory(prefix="cartos-bridge-") as tmp:
        link = Path(tmp) / "mcu"
        emu = Emulator(link, adc_rate_hz=100_000.0, seed=seed, record_truth=True, idle_sleep_s=0)
        emu.to_host.ber = ber
        emu.from_host.ber = ber
        truth = emu.truth
        assert truth is not None
        lock = threading.Lock()
        corrupt = 0
        samples_checked = 0

        def check(sample: Sample) -> None:
            nonlocal corrupt, samples_checked
            with truth.lock:
                expected = truth.samples.get(sample.mcu_clock)
            got = (round(sample.weight_g * 1000), sample.raw)
            with lock:
                samples_checked += 1
                if expected is None or expected[:2] != got:
                    corrupt += 1

        cal = emu.calibration
        client = BridgeClient(
            str(link),
            scale=ScaleConfig(cal.zero_counts, cal.span_counts, cal.span_grams),
            stream_every=1,
            on_sample=check,
        )
        scans: Counter[str] = Counter()
        events_corrupt = 0
        sent_codes: list[str] = []
        t_start = time.monotonic()
        with emu:
            client.start()
            if not client.wait_ready(10):
                raise RuntimeError(f"bridge never came up: {client.stats().last_error}")
            next_scan = time.monotonic()
            last_log = 0.0
            n = 0
            def scans_sent() -> int:
                with truth.lock:
                    return sum(1 for name, _v in truth.events.values() if name == "scan")

            enough_scans = min_events <= 0
            checked_at = 0.0
            while truth.frames_sent < frames or not enough_scans:
                now = time.monotonic()
                if not enough_scans and now - checked_at > 0.1:
                    checked_at = now
                    enough_scans = scans_sent() >= min_events
                if now - t_start > timeout_s:
                    break
                if now >= next_scan:
                    code = f"{n:013d}"
                    n += 1
                    sent_codes.append(code)
                    emu.scanner.scan(code)
                    next_scan = now + scan_every_s
                for ev in client.poll():
                    if isinstance(ev, Scan):
                        scans[ev.code] += 1
                if now - last_log > 5:
                    last_log = now
                    log(f"  {truth.frames_sent} frames, {len(sent_codes)} scans sent")
                time.sleep(0.001)
            emu.to_host.ber = 0.0  # let the tail drain cleanly; losses happened above or not at all
            emu.from_host.ber = 0.0
            emu.wait_until(lambda: not emu.app.link.queue and not emu.scanner._codes, 30)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                for ev in client.poll():
                    if isinstance(ev, Scan):
                        scans[ev.code] += 1
                if sum(scans.values()) >= len(sent_codes) and not emu.app.link.queue:
                    break
                time.sleep(0.01)
            stats = client.stats()
            client.stop()
        with truth.lock:
            truth_scans = {
                bytes(v["code"]).decode(): eid  # type: ignore[call-overload]
                for eid, (name, v) in truth.events.items()
                if name == "scan"
            }
        for code in scans:
            if code not in truth_scans:
                events_corrupt += 1
        sent_by_mcu = len(truth_scans)
        lost = sum(1 for code in truth_scans if scans.get(code, 0) == 0)
        duplicated = sum(max(0, c - 1) for c in scans.values())
        elapsed = time.monotonic() - t_start
        return {
            "frames": truth.frames_sent,
            "ber": ber,
            "corrupt_accepted": corrupt + events_corrupt,
            "samples_checked": samples_checked,
            "events_sent": sent_by_mcu,
            "scans_requested": len(sent_codes),
            "events_lost": lost,
            "events_duplicated": duplicated,
            "retransmits": stats.transport.frames_retransmitted + emu.app.link.events_resent,
            "host_frames_retransmitted": stats.transport.frames_retransmitted,
            "mcu_events_resent": emu.app.link.events_resent,
            "scans_refused": emu.feedback.count(2),
            "bits_flipped": emu.to_host.stats.bits_flipped + emu.from_host.stats.bits_flipped,
            "host_frames_invalid": stats.frames_invalid,
            "host_bytes_invalid": stats.bytes_invalid,
            "reconnects": stats.reconnects,
            "resyncs": stats.transport.resyncs,
            "srtt_ms": stats.transport.srtt_ms,
            "elapsed_s": round(elapsed, 1),
        }
