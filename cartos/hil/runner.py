"""Run scenarios against the sensors side: the emulator on ``sim``, real ports elsewhere.

On the ``sim`` profile (bridge port ``"emulator"``) the harness starts the
emulated board on a real pseudo-terminal, shaped by the profile's scale
calibration, and plays the scenario's physical inputs into it (weights, scans,
line faults) while the real host driver talks to it. On any other profile the
same scenario runs against the real board on the profile's port: physical
inputs become operator prompts printed at their time, and emulator-only faults
are skipped and listed. Either way, the expectations are checked against what
the host driver and camera reported.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cartos.hil.errors import HilError
from cartos.hil.scenario import Expectation, Scenario, Step
from cartos.profiles.schema import DeviceProfile
from cartos.sensors.barcode import InvalidBarcodeError, parse_barcode
from cartos.sensors.bridge.client import BridgeClient
from cartos.sensors.bridge.events import BridgeEvent, LinkState, ScaleState, Scan, Settled, Tared
from cartos.sensors.bridge.profile import emulator_for, scale_config
from cartos.sensors.camera import Frame, FrameRing, ScenarioReplay, changed_region

DEFAULT_TOLERANCE_G = 3.0


@dataclass
class Check:
    expectation: Expectation
    passed: bool
    detail: str


@dataclass
class ScenarioResult:
    name: str
    checks: list[Check] = field(default_factory=list)
    skipped_inputs: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    link: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.name,
            "passed": self.passed,
            "checks": [
                {"line": c.expectation.line, "expect": c.expectation.kind, "passed": c.passed,
                 "detail": c.detail}
                for c in self.checks
            ],
            "skipped_inputs": self.skipped_inputs,
            "events": self.events,
            "link": self.link,
            "elapsed_s": round(self.elapsed_s, 2),
        }


class _Board:
    """What the harness can do to the board: the emulator, or an operator at a real one."""

    def __init__(self, profile: DeviceProfile, workdir: Path,
                 prompt: Callable[[str], None]) -> None:
        self.profile = profile
        self.prompt = prompt
        self.emulator: Any = None
        if profile.bridge.is_emulated:
            self.emulator = emulator_for(profile, workdir / "cart-mcu")
            self.port = str(self.emulator.link_path)
        else:
            self.port = profile.bridge.port

    def start(self) -> None:
        if self.emulator is not None:
            self.emulator.start()

    def stop(self) -> None:
        if self.emulator is not None:
            self.emulator.stop()

    def apply(self, step: Step, skipped: list[str]) -> None:
        a = step.args
        emu = self.emulator
        if emu is None:
            self._prompt_operator(step, skipped)
            return
        now = emu.now()
        if step.kind == "place":
            emu.weight.place(now, float(a["grams"]))
        elif step.kind == "remove":
            emu.weight.place(now, -float(a["grams"]))
        elif step.kind == "bump":
            emu.weight.bump(now, float(a["grams"]), float(a.get("duration", 0.15)))
        elif step.kind == "rolling":
            emu.weight.rolling(now, float(a["grams"]))
        elif step.kind == "drift":
            emu.weight.drift_g_per_min = float(a["grams_per_min"])
        elif step.kind == "scan":
            emu.scanner.scan(str(a["code"]))
        elif step.kind == "fault":
            self._fault(a)

    def _fault(self, a: dict[str, Any]) -> None:
        emu = self.emulator
        kind = a["fault"]
        duration = float(a.get("duration", 0.0))
        lines = {"to_host": [emu.to_host], "from_host": [emu.from_host]}.get(
            str(a.get("direction", "both")), [emu.to_host, emu.from_host])
        if kind == "garbage":
            for line in lines:
                line.garbage(int(a.get("bytes", 32)))
        elif kind in ("ber", "drop"):
            attr = "ber" if kind == "ber" else "drop_rate"
            for line in lines:
                setattr(line, attr, float(a.get("rate", 1e-3)))
            if duration:

                def clear() -> None:
                    for line in lines:
                        setattr(line, attr, 0.0)

                _later(duration, clear)
        elif kind == "stall":
            for line in lines:
                line.stall(duration or 0.5)
        elif kind == "unplug":
            emu.unplug()
            _later(duration or 1.0, emu.replug)
        elif kind == "reboot":
            emu.reboot()
        elif kind == "adc_disconnect":
            emu.hx711.disconnected = True
            _later(duration or 1.0, lambda: setattr(emu.hx711, "disconnected", False))
        elif kind == "overload":
            grams = float(self.profile.scale.capacity_g) * 1.2
            emu.weight.place(emu.now(), grams)
            _later(duration or 1.0, lambda: emu.weight.place(emu.now(), -grams))

    def _prompt_operator(self, step: Step, skipped: list[str]) -> None:
        a = step.args
        if step.kind == "place":
            text = f"put an item of about {a['grams']} g in the basket"
        elif step.kind == "remove":
            text = f"take the {a['grams']} g item out"
        elif step.kind == "bump":
            text = "knock the basket once"
        elif step.kind == "rolling":
            text = "push the cart around" if float(a["grams"]) else "stop the cart"
        elif step.kind == "scan":
            text = f"scan {a['code']}"
        else:
            skipped.append(f"line {step.line}: {step.kind} needs the emulator")
            return
        self.prompt(f"[t={step.t:5.1f}s] {text}")


def _later(delay: float, action: Callable[[], object]) -> None:
    import threading

    timer = threading.Timer(delay, action)
    timer.daemon = True
    timer.start()


def run_scenario(
    profile: DeviceProfile,
    scenario: Scenario,
    prompt: Callable[[str], None] = print,
    connect_timeout_s: float = 15.0,
) -> ScenarioResult:
    """Play one scenario and check its expectations."""
    result = ScenarioResult(scenario.name)
    with tempfile.TemporaryDirectory(prefix="cartos-hil-") as tmp:
        board = _Board(profile, Path(tmp), prompt)
        board.start()
        client = BridgeClient(
            board.port,
            baud=profile.bridge.baud,
            scale=scale_config(profile),
            clock_sync_interval_s=profile.bridge.clock_sync_interval_s,
            reconnect_max_backoff_s=profile.bridge.reconnect_max_backoff_s,
        )
        ring = FrameRing(max_frames=None, max_bytes=512 * 1024 * 1024)
        try:
            client.start()
            if not client.wait_ready(connect_timeout_s):
                raise HilError(f"{scenario.name}: the board on {board.port} never became ready: "
                               f"{client.stats().last_error or 'no answer'}")
            time.sleep(0.5)  # let the empty basket settle before the clock starts
            client.poll()
            events, t0 = _play(scenario, board, client, ring, result)
        finally:
            client.stop()
            board.stop()
        stats = client.stats()
        result.link = {
            "reconnects": stats.reconnects,
            "state": stats.state,
            "frames_invalid": stats.frames_invalid,
            "bytes_invalid": stats.bytes_invalid,
            "retransmitted": stats.transport.frames_retransmitted,
            "events_duplicate": stats.events_duplicate,
            "srtt_ms": stats.transport.srtt_ms,
        }
        if board.emulator is not None:
            result.link["mcu_events_resent"] = board.emulator.app.link.events_resent
        for exp in scenario.expectations:
            result.checks.append(_check(exp, events, ring.snapshot(), t0, result.link))
    return result


Timed = tuple[float, BridgeEvent]


def _play(
    scenario: Scenario,
    board: _Board,
    client: BridgeClient,
    ring: FrameRing,
    result: ScenarioResult,
) -> tuple[list[Timed], float]:
    t0 = time.monotonic()
    camera = ScenarioReplay(realtime=True, origin=t0)  # frames due on the scenario clock
    for step in scenario.steps:
        if step.kind == "frame":
            camera.push(step.t, step.args["image"])
    camera.finish()
    with camera:
        events = _pump(scenario, board, client, camera, ring, result, t0)
    return events, t0


def _pump(
    scenario: Scenario,
    board: _Board,
    client: BridgeClient,
    camera: ScenarioReplay,
    ring: FrameRing,
    result: ScenarioResult,
    t0: float,
) -> list[Timed]:
    events: list[Timed] = []
    pending = [s for s in scenario.steps if s.kind != "frame"]
    end = t0 + scenario.duration
    while time.monotonic() < end:
        now = time.monotonic() - t0
        while pending and pending[0].t <= now:
            step = pending.pop(0)
            if step.kind == "tare":
                client.tare()
            else:
                board.apply(step, result.skipped_inputs)
        for ev in client.poll():
            events.append((getattr(ev, "t", time.monotonic()) - t0, ev))
        while (frame := camera.read(0)) is not None:
            ring.push(frame)
        time.sleep(0.01)
    for ev in client.poll():
        events.append((getattr(ev, "t", time.monotonic()) - t0, ev))
    result.elapsed_s = time.monotonic() - t0
    result.events = [_event_dict(t, ev) for t, ev in events]
    return events


def _event_dict(t: float, ev: BridgeEvent) -> dict[str, Any]:
    out: dict[str, Any] = {"t": round(t, 3), "type": type(ev).__name__}
    if isinstance(ev, Settled):
        out.update(weight_g=ev.weight_g, delta_g=ev.delta_g)
    elif isinstance(ev, Scan):
        out.update(code=ev.code)
    elif isinstance(ev, ScaleState | LinkState):
        out.update(state=ev.state)
    return out


def _in(t: float, window: tuple[float, float] | None) -> bool:
    return window is None or window[0] <= t <= window[1]


def _check(exp: Expectation, events: list[Timed], frames: list[Frame], t0: float,
           link: dict[str, Any]) -> Check:
    a = exp.args
    k = exp.kind
    if k == "settled":
        tol = float(a.get("tol", DEFAULT_TOLERANCE_G))
        settled = [(t, e) for t, e in events
                   if isinstance(e, Settled) and _in(t, a.get("within"))]
        for t, e in settled:
            if abs(e.delta_g - float(a["delta"])) <= tol and (
                "weight" not in a or abs(e.weight_g - float(a["weight"])) <= tol
            ):
                return Check(exp, True, f"settled {e.delta_g:+.1f} g at t={t:.2f}s")
        seen = ", ".join(f"{e.delta_g:+.1f} g@{t:.2f}s" for t, e in settled) or "none"
        return Check(exp, False, f"no settled delta {a['delta']}±{tol} g; saw {seen}")
    if k == "no_settled":
        unexpected = [(t, e) for t, e in events
                      if isinstance(e, Settled) and _in(t, a["between"])]
        if unexpected:
            return Check(exp, False, "unexpected: " + ", ".join(
                f"{e.delta_g:+.1f} g@{t:.2f}s" for t, e in unexpected))
        return Check(exp, True, "no settled change")
    if k == "count":
        kinds = {"settled": Settled, "scan": Scan, "state": ScaleState, "tared": Tared}
        n = sum(1 for t, e in events if isinstance(e, kinds[a["event"]])
                and _in(t, a.get("between")))
        return Check(exp, n == int(a["equals"]), f"{n} {a['event']} event(s)")
    if k == "scan":
        scans = [e for t, e in events if isinstance(e, Scan) and e.code == a["code"]
                 and _in(t, a.get("within"))]
        if len(scans) != 1:
            return Check(exp, False, f"scan {a['code']!r} delivered {len(scans)} times")
        return _check_barcode(exp, scans[0].code)
    if k == "state":
        times = [round(t, 2) for t, e in events if isinstance(e, ScaleState)
                 and e.state == a["state"] and _in(t, a.get("within"))]
        return Check(exp, bool(times), f"state {a['state']} at {times}" if times else
                     f"state {a['state']} never reported")
    if k == "tared":
        tares = [round(t, 2) for t, e in events if isinstance(e, Tared)
                 and _in(t, a.get("within"))]
        return Check(exp, bool(tares), f"tared at {tares}" if tares else "no tare")
    if k == "frames":
        return Check(exp, len(frames) >= int(a["at_least"]), f"{len(frames)} camera frames")
    if k == "change":
        start, end = a["between"]
        before = min(frames, key=lambda f: abs(f.t - t0 - start), default=None)
        after = min(frames, key=lambda f: abs(f.t - t0 - end), default=None)
        if before is None or after is None or before is after:
            return Check(exp, False, "not enough camera frames around the window")
        region = changed_region(before.image, after.image)
        ok = region is not None and region.w * region.h >= int(a.get("min_area", 1))
        return Check(exp, ok, f"changed region {region}")
    # link
    problems = []
    if "reconnects_at_least" in a and link["reconnects"] < int(a["reconnects_at_least"]):
        problems.append(f"{link['reconnects']} reconnects")
    if "state" in a and link["state"] != a["state"]:
        problems.append(f"link state {link['state']}")
    if "max_corrupt" in a and link["events_duplicate"] > int(a["max_corrupt"]):
        problems.append(f"{link['events_duplicate']} duplicates")
    return Check(exp, not problems, "; ".join(problems) or f"link {link}")


def _check_barcode(exp: Expectation, code: str) -> Check:
    a = exp.args
    try:
        barcode = parse_barcode(code)
    except InvalidBarcodeError as exc:
        if a.get("valid", True):
            return Check(exp, False, f"{code!r} rejected: {exc}")
        if "reason" in a and str(a["reason"]) not in str(exc):
            return Check(exp, False, f"rejected for {exc!s}, expected reason {a['reason']!r}")
        return Check(exp, True, f"rejected: {exc}")
    if not a.get("valid", True):
        return Check(exp, False, f"{code!r} accepted as {barcode.symbology}")
    if "symbology" in a and str(barcode.symbology) != a["symbology"]:
        return Check(exp, False, f"symbology {barcode.symbology}, expected {a['symbology']}")
    if "lookup_key" in a and barcode.lookup_key != a["lookup_key"]:
        return Check(exp, False, f"lookup key {barcode.lookup_key}, expected {a['lookup_key']}")
    return Check(exp, True, f"{barcode.symbology} {barcode.lookup_key}")
