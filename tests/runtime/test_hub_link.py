"""``cartos run`` with a ``[sync]`` section: the real service takes the hub's signed releases
into the catalogue it recognises against, reloads it, and swaps its backbone when a release
brings one."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from cartos.catalog.store import CatalogStore
from cartos.hub.catalogue import HubCatalogue, provision
from cartos.hub.release import Releaser
from cartos.hub.service import Hub, HubSettings
from cartos.inference.model_card import shipped_model_path
from cartos.runtime.simulation import SimulatedStore
from cartos.sync.bundles import generate_private_key, issue_signing_key, public_key_hex
from tests.sync.broker import Broker
from tests.sync.conftest import require_mosquitto
from tests.waiting import wait_until

STORE, CART = "s001", "cart-s001-0042"


def _held(catalogue: Path) -> int:
    """The catalogue release the cart's catalogue file holds (0: none)."""
    try:
        with sqlite3.connect(catalogue) as conn:
            row = conn.execute("SELECT MAX(version) FROM bundle_slots "
                               "WHERE type = 'catalogue' AND slot = 'current'").fetchone()
    except sqlite3.OperationalError:  # no bundle table yet
        return 0
    return int(row[0] or 0)




def test_the_cart_service_applies_hub_releases_and_reloads(
    sim_store: SimulatedStore, tmp_path: Path
) -> None:
    require_mosquitto()
    master = tmp_path / "hub" / "catalogue.db"
    master.parent.mkdir()
    shutil.copy(sim_store.db, master)
    provision(master)
    cart_catalogue = tmp_path / "cart" / "catalogue.db"
    cart_catalogue.parent.mkdir()
    shutil.copy(master, cart_catalogue)
    root = generate_private_key()
    key = issue_signing_key(root, "hub-s001-a", stores=[STORE])
    overlay = tmp_path / "etc"
    overlay.mkdir()
    with Broker(tmp_path / "broker") as broker:
        (overlay / "50-sync.toml").write_text(
            f'[sync]\nstore = "{STORE}"\ncart = "{CART}"\nport = {broker.port}\n'
            f'root_key = "{public_key_hex(root)}"\n')
        hub = Hub(tmp_path / "hub" / "hub.db", STORE, "hub-s001", HubSettings(port=broker.port),
                  releaser=Releaser(HubCatalogue(master), key, STORE)).start()
        proc = subprocess.Popen(
            [sys.executable, "-m", "cartos", "-v", "run", "--profile", "sim", "--catalogue",
             str(cart_catalogue), "--state-dir", str(tmp_path / "state"), "--no-api"],
            env={**__import__("os").environ, "CARTOS_CONFIG_DIR": str(overlay)},
            stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(
            target=lambda: lines.extend(iter(proc.stderr.readline, "")) if proc.stderr else None,
            daemon=True)
        reader.start()
        try:
            wait_until(lambda: _held(cart_catalogue) >= 1, 60, "the first release on the cart")
            # An attendant's label at the hub: the master catalogue learns, a release follows.
            with CatalogStore(master) as store:
                sku = store.list_skus()[0].sku
                vector = store.exemplars(skus=[sku]).vectors[0]
            noisy = vector + np.random.default_rng(0).normal(0, 0.01, vector.shape)
            assert hub.releaser is not None
            assert hub.releaser.catalogue.learn(sku, noisy.astype(np.float32), "cart-x", "p1")
            hub.request_release()
            wait_until(lambda: _held(cart_catalogue) >= 2, 30, "the second release on the cart")
            wait_until(lambda: any("catalogue reloaded" in line for line in lines), 15,
                  "the runtime reloading its catalogue")
            with CatalogStore(cart_catalogue) as store:
                sources = store.exemplars(skus=[sku], kind="fleet").sources
            assert sources == ["correction:cart-x:p1"]

            # A backbone release: the cart checks the model, then the runtime swaps to it.
            hub.releaser.catalogue.set_model(shipped_model_path())
            hub.request_release()
            wait_until(lambda: _held(cart_catalogue) >= 3, 60, "the model release on the cart")
            wait_until(lambda: any("backbone swapped" in line for line in lines), 20,
                  "the runtime swapping its backbone")
            assert list((tmp_path / "state" / "models").glob("*.onnx"))
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, "".join(lines[-30:])
        finally:
            if proc.poll() is None:
                proc.kill()
            hub.stop()
