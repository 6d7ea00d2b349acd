"""A short ``cartos bench runtime``: every event decided, latencies reported, no backlog left."""

from __future__ import annotations

from cartos.bench.runtime_latency import run
from cartos.runtime.simulation import SimulatedStore


def test_short_sustained_run(sim_store: SimulatedStore) -> None:
    r = run(rate_hz=1.0, seconds=6.0, store=sim_store)
    assert r["events"] >= 5
    assert sum(r["decisions"].values()) == r["events"]
    assert r["decisions"].get("accept", 0) >= 1
    assert 0 < r["backbone_ms"]["p50"] <= r["service_ms"]["p50"] <= r["processing_ms"]["p50"]
    assert r["end_to_end_ms"]["p50"] >= r["scan_window_ms"]
    assert r["backlog_max"] <= 2
