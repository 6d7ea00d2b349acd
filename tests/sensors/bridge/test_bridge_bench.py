"""A short run of ``cartos bench bridge``: the acceptance numbers, at 10x the bit-error rate."""

from __future__ import annotations

import json
import subprocess
import sys

from cartos.bench.bridge import run


def test_noisy_line_accepts_nothing_corrupt_and_loses_no_scan() -> None:
    r = run(ber=1e-3, frames=8000, scan_every_s=0.005, min_events=60)
    assert r["frames"] >= 8000
    assert r["bits_flipped"] > 100  # the line really was noisy
    assert r["host_frames_invalid"] > 0
    assert r["samples_checked"] > 4000
    assert r["corrupt_accepted"] == 0
    assert r["events_sent"] > 50  # enough scans for "none lost" to mean something
    assert r["events_lost"] == 0 and r["events_duplicated"] == 0
    assert r["retransmits"] > 0


def test_cli_prints_the_documented_json_last() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cartos", "bench", "bridge", "--ber", "1e-4", "--frames", "2000",
         "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("frames", "corrupt_accepted", "events_sent", "events_lost", "events_duplicated",
                "retransmits"):
        assert key in last
    assert last["frames"] >= 2000 and last["corrupt_accepted"] == 0
