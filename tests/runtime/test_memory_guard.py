"""Memory headroom: the runtime gives the model back when it is lost and reloads it after."""

from __future__ import annotations

from pathlib import Path

from cartos.basket.events import SessionOpened
from cartos.profiles.loader import load_profile
from cartos.runtime.cart import CartRuntime
from cartos.runtime.memory import MemoryGuard, resident_mib
from cartos.runtime.simulation import SimulatedStore


def test_resident_size_is_read_from_proc(tmp_path: Path) -> None:
    rss = resident_mib()
    assert rss is not None and 10 < rss < 100_000
    broken = tmp_path / "status"
    broken.write_text("Name: x\n")
    assert resident_mib(broken) is None


def test_guard_has_hysteresis() -> None:
    guard = MemoryGuard(budget_mib=1000, required=0.2, recover_margin=0.05)
    assert not guard.update(0.0, rss_mib=700) and not guard.low  # 30 % free
    assert guard.update(1.0, rss_mib=850) and guard.low  # 15 % free: lost
    assert not guard.update(2.0, rss_mib=780) and guard.low  # 22 %: not yet back
    assert guard.update(3.0, rss_mib=700) and not guard.low  # 30 %: back
    assert guard.headroom is not None and abs(guard.headroom - 0.3) < 1e-9


def test_runtime_releases_the_model_and_reloads_it(sim_store: SimulatedStore,
                                                   tmp_path: Path) -> None:
    runtime = CartRuntime(load_profile("sim"), sim_store.db, tmp_path / "basket.db", tmp_path,
                          port="/dev/null")
    runtime.basket.apply(SessionOpened("test:s", "s-1"))
    assert runtime.decider.recognizer is not None
    rss = resident_mib()
    assert rss is not None
    runtime.memory.budget_mib = rss * 1.05  # this process now leaves under 20 % free
    runtime.step(now=100.0)
    assert runtime.decider.recognizer is None
    assert runtime.mode == "barcode_only"
    assert runtime.health.to_dict(100.0)["headroom"] is not None
    runtime.memory.budget_mib = rss * 10  # room again
    runtime.step(now=200.0)
    assert runtime.decider.recognizer is not None and runtime.health.model
    assert runtime.mode != "barcode_only"
    runtime.stop()
