"""``cartos run`` as systemd runs it: READY only when ready, watchdog, API, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cartos.runtime.simulation import SimulatedStore


def _drain(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            return out


def test_run_under_systemd_notify(sim_store: SimulatedStore, tmp_path: Path) -> None:
    notify = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(0.2)
    env = dict(os.environ, NOTIFY_SOCKET=str(notify), WATCHDOG_USEC="1000000")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cartos", "run", "--profile", "sim", "--catalogue",
         str(sim_store.db), "--state-dir", str(tmp_path / "state"), "--api-port", "0"],
        env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        messages: list[str] = []
        deadline = time.monotonic() + 60
        while not any("READY=1" in m for m in messages) and time.monotonic() < deadline:
            messages += _drain(sock)
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        ready_at = next(i for i, m in enumerate(messages) if "READY=1" in m)
        assert any("catalogue ok" in m for m in messages[:ready_at])  # READY only after checks
        assert proc.stderr is not None
        line = proc.stderr.readline()
        while "cart API on" not in line:
            line = proc.stderr.readline()
            assert line, "runtime exited before announcing its API"
        url = line.split()[-1]
        health = json.loads(urllib.request.urlopen(url + "/api/v1/health").read())
        # no camera frames in a standalone sim run: barcode + weight, announced as such
        assert health["mode"] == "barcode_weight" and health["sensors"]["link"] is True
        basket = json.loads(urllib.request.urlopen(url + "/api/v1/basket").read())
        assert basket["status"] == "open" and basket["items"] == []
        metrics = urllib.request.urlopen(url + "/metrics").read().decode()
        assert "cartos_" in metrics
        time.sleep(1.5)
        later = _drain(sock)
        assert "WATCHDOG=1" in later
        assert any("STATUS=degraded" in m for m in messages + later)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert any("STOPPING=1" in m for m in _drain(sock))
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()


def test_missing_catalogue_refuses_to_start(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cartos", "run", "--profile", "sim", "--catalogue",
         str(tmp_path / "nope.db"), "--state-dir", str(tmp_path), "--no-api"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "nope.db" in proc.stderr and "does not exist" in proc.stderr
