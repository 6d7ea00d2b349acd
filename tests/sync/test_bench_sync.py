"""``cartos bench sync`` end to end at a small scale (the full 10,000 / 100 run is a benchmark)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.sync.conftest import require_mosquitto


def test_small_sync_benchmark_loses_nothing_through_every_kind_of_outage() -> None:
    require_mosquitto()
    proc = subprocess.run(
        [sys.executable, "-m", "cartos", "bench", "sync", "--messages", "300", "--outages", "6",
         "--seed", "2", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"sent", "committed", "missing", "duplicates_dropped", "max_reconnect_s"} <= set(result)
    assert result["sent"] == 300
    assert result["committed"] == 300 and result["missing"] == 0 and result["extra"] == 0
    assert result["pending_on_cart"] == 0
    assert sum(result["outages"].values()) == 6
    assert all(result["outages"][k] >= 1 for k in ("broker_kill", "connection_reset", "cart_kill"))
    # Reconnection time is a measurement (docs/benchmarks.md), not asserted here: on a loaded
    # machine one outage's "online" was not seen within the 30 s the benchmark waits.
    assert result["max_reconnect_s"] is not None
