"""Power cut in the middle of an item event: the real ``cartos run`` process, killed with -9.

The weight has settled and the board has had its acknowledgement, but the
runtime is still inside the scan window and has written nothing to the basket
when it dies. After the restart the event must be decided from the journal,
once: the item is in the basket exactly once, and further restarts change
nothing.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cartos.basket.store import BasketStore
from cartos.profiles.loader import load_profile
from cartos.runtime.simulation import Product, SimulatedStore
from cartos.sensors.bridge.profile import emulator_for

REPO = Path(__file__).resolve().parents[2]


def _start(link: Path, catalogue: Path, state: Path) -> subprocess.Popen[bytes]:
    """``cartos run`` on the sim profile, its bridge on the test's own emulated board (which
    outlives the process, as a board does when only the computer crashes)."""
    env = dict(os.environ, CARTOS_CONFIG_DIR=str(state / "no-overlays"))
    with (state / "run.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cartos", "run", "--profile", "sim", "--port", str(link),
             "--catalogue", str(catalogue), "--state-dir", str(state), "--no-api"],
            stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=REPO,
        )


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def _journal(state: Path) -> list[tuple[str, float | None]]:
    path = state / "basket-inbox.db"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [(str(k), d) for k, d in conn.execute("SELECT key, decided_at FROM inbox")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _items(state: Path) -> dict[str, int]:
    with BasketStore(state / "basket.db") as store:
        return {i["sku"]: int(i["qty"]) for i in store.view()["items"]}


@pytest.fixture
def product(sim_store: SimulatedStore) -> Product:
    return next(p for p in sorted(sim_store.known.values(), key=lambda p: p.sku) if p.barcode)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "state"
    folder.mkdir()
    yield folder


def test_power_cut_mid_event_resumes_and_bills_the_item_once(
    sim_store: SimulatedStore, product: Product, state: Path, tmp_path: Path
) -> None:
    sim = load_profile("sim")
    link = tmp_path / "cart-mcu"
    board = emulator_for(sim, link).start()
    proc = _start(link, sim_store.db, state)
    try:
        _wait(lambda: (state / "basket-inbox.db").exists(), 60,
              "the runtime to open its basket and journal")
        time.sleep(1.0)  # let the link come up and the scale zero
        board.scanner.scan(product.barcode)
        board.weight.place(board.now(), product.weight_g)
        # The settled weight is journalled; the runtime now waits out the scan window.
        _wait(lambda: any(k.startswith("w:") and d is None for k, d in _journal(state)), 20,
              "the settled weight to be journalled")
        _kill(proc)
        assert _items(state) == {}, "killed before the decision: nothing billed yet"
        pending = [k for k, d in _journal(state) if d is None]
        assert any(k.startswith("w:") for k in pending)

        # The power cut took the board down too: it comes back with a new boot.
        board.stop()
        board = emulator_for(sim, link).start()
        proc = _start(link, sim_store.db, state)
        _wait(lambda: _items(state) == {product.sku: 1}, 60, "the replayed event's decision")
        _wait(lambda: all(d is not None for _k, d in _journal(state)), 10,
              "the journal to mark the replayed events decided")
        _kill(proc)

        proc = _start(link, sim_store.db, state)  # nothing pending: nothing changes
        time.sleep(3.0)
        assert proc.poll() is None, (state / "run.log").read_text()[-2000:]
        assert all(d is not None for _k, d in _journal(state))
        _kill(proc)
        assert _items(state) == {product.sku: 1}
        with BasketStore(state / "basket.db") as store:
            assert store.check() == []
            alerts = [a["kind"] for a in store.view()["alerts"]]
        assert alerts == []  # the scan and the weight agreed, camera or not
    finally:
        if proc.poll() is None:
            _kill(proc)
        board.stop()
