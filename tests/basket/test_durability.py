"""The acceptance check: a writer killed with SIGKILL at random points loses and doubles nothing."""

from __future__ import annotations

from pathlib import Path

from cartos.basket.store import BasketStore
from cartos.bench.durability import run


def test_25_random_kills_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    results = run(25, seed=11, workdir=tmp_path)
    assert results["kills"] == 25
    assert results["events_acknowledged"] >= 25
    assert results["resends"] >= 15
    assert results["commands_committed"] >= results["events_acknowledged"]
    assert results["lost"] == 0
    assert results["duplicated"] == 0
    assert results["integrity_failures"] == 0
    assert results["invariant_failures"] == 0
    assert results["state_mismatches"] == 0
    assert list(results)[-5:] == [
        "kills",
        "events_acknowledged",
        "lost",
        "duplicated",
        "integrity_failures",
    ]
    with BasketStore(tmp_path / "basket.db") as store:
        assert store.check() == []
        assert store.version >= 1
