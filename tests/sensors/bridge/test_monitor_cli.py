"""``cartos sensors monitor``: bench bring-up view of the link, here against the emulator."""

from __future__ import annotations

import json
import subprocess
import sys


def test_monitor_prints_events_then_link_stats() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cartos", "sensors", "monitor", "sim", "--seconds", "2.5"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    assert lines[-1]["type"] == "LinkStats"
    assert lines[-1]["state"] == "ready" and lines[-1]["frames_received"] > 0
    assert {"type": "LinkState", "state": "ready", "detail": ""} in lines
    states = [e["state"] for e in lines if e["type"] == "ScaleState"]
    assert states and states[0] == "ok"  # an idle basket on the profile's calibration is stable
