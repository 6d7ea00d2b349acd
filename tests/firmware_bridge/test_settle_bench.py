"""``cartos bench settle`` as a user runs it (a tiny run: the real one is minutes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_settle_bench_prints_json_last_and_writes_it(tmp_path: Path) -> None:
    out = tmp_path / "settle.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cartos",
            "bench",
            "settle",
            "--hours",
            "0.01",
            "--trials",
            "1",
            "--seed",
            "3",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert printed == json.loads(out.read_text())
    assert "window 500 ms (default)" in proc.stderr and "false settled" in proc.stderr
    assert printed["seed"] == 3 and printed["trials_per_scenario"] == 1
    names = [p["params"]["name"] for p in printed["parameterisations"]]
    assert len(names) == 3
    for entry in printed["parameterisations"]:
        everything = entry["placements"]["all"]
        assert everything["trials"] == 4
        assert everything["missed"] + everything["latency_ms"]["n"] == 4
        assert entry["soak"]["hours"] == 0.01


def test_settle_bench_json_flag_keeps_stderr_quiet(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cartos",
            "bench",
            "settle",
            "--hours",
            "0.005",
            "--trials",
            "1",
            "--json",
            "--out",
            str(tmp_path / "s.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert proc.stderr == ""
    assert json.loads(proc.stdout)["benchmark"] == "settle"
