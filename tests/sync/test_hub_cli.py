"""``cartos hub --config``: the hub as a process, fed by a cart, and refusing a bad config."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from cartos.basket.events import ItemAdded, SessionOpened
from cartos.basket.store import BasketStore
from cartos.hub.store import HubStore
from cartos.sync.cart_client import CartSync, SyncSettings
from tests.sync.broker import Broker

STORE, CART = "s001", "cart-s001-0007"


def _config(tmp: Path, port: int, extra: str = "") -> Path:
    path = tmp / "hub.toml"
    path.write_text(f'store = "{STORE}"\nhub_id = "hub-{STORE}"\ndatabase = "data/hub.db"\n'
                    f"{extra}\n[broker]\nport = {port}\n")
    return path


def test_the_hub_process_commits_a_carts_corrections_and_acks_them(
    broker: Broker, tmp_path: Path
) -> None:
    config = _config(tmp_path, broker.port)
    hub = subprocess.Popen([sys.executable, "-m", "cartos", "hub", "--config", str(config)],
                           stderr=subprocess.PIPE, text=True)
    basket_db = tmp_path / "basket.db"
    with BasketStore(basket_db) as basket:
        basket.apply(SessionOpened("open", "3f2a9c1e-7b4d-4e8f-9a6b-1c2d3e4f5a6b"))
        for i in range(20):
            basket.apply(ItemAdded(f"answer:{i}", "sku-1", 1, corrects=f"prompt:{i}"))
    cart = CartSync(basket_db, STORE, CART, SyncSettings(port=broker.port)).start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with BasketStore(basket_db) as basket:
                if basket.outbox_stats()["corrections"].pending == 0:
                    break
            time.sleep(0.1)
        else:
            raise AssertionError("the hub never acknowledged the corrections")
    finally:
        cart.stop()
        hub.terminate()
        _out, err = hub.communicate(timeout=20)
    assert hub.returncode == 0, err
    assert "20 committed" in err or "21 committed" in err  # + the session's event
    with HubStore(tmp_path / "data" / "hub.db") as store:
        assert len(store.ids("corrections")) == 20


def test_a_config_with_an_unknown_key_is_refused_with_exit_78(tmp_path: Path) -> None:
    config = _config(tmp_path, 1883, extra='colour = "blue"')
    proc = subprocess.run([sys.executable, "-m", "cartos", "hub", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 78
    assert "colour" in proc.stderr
