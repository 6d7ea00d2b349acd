"""Signed bundles down to a cart through a real Mosquitto, across a day offline and restarts."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cartos.hub.bundles import publish_bundle
from cartos.sync.bundles import (
    BundleStore,
    Manifest,
    build_manifest,
    generate_private_key,
    issue_signing_key,
    public_key_hex,
)
from cartos.sync.cart_client import CartSync, SyncSettings
from tests.sync.broker import Broker
from tests.waiting import wait_until

STORE, CART = "s001", "cart-s001-0001"
DAY = 86_400




class Hub:
    """The hub's publishing side: a root, a signing key and an MQTT client."""

    def __init__(self, port: int, client_id: str = "hub-s001") -> None:
        self.root = generate_private_key()
        now = int(time.time())
        self.key = issue_signing_key(self.root, "hub-s001-a", not_before=now - DAY,
                                     not_after=now + 30 * DAY, stores=[STORE])
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def release(self, version: int, issued_at: int, size: int = 300_000) -> bytes:
        parts = {"prototypes": ("prototypes", bytes([version % 251]) * size),
                 "thresholds": ("thresholds", b'{"accept": 0.9}')}
        manifest = build_manifest(bundle_type="catalogue", store=STORE, version=version,
                                  issued_at=issued_at, expires_at=issued_at + 7 * DAY,
                                  key_id=self.key.key_id, parts=parts)
        envelope = self.key.sign(manifest)
        publish_bundle(self.client, STORE, [(envelope, manifest,
                                             {n: d for n, (_k, d) in parts.items()})],
                       certificates=[self.key.certificate_envelope], chunk_bytes=64 * 1024)
        return envelope

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _bundle_store(path: Path, root_hex: str,
                  clock: Callable[[], float]) -> Callable[[], BundleStore]:
    def apply(manifest: Manifest, parts: Mapping[str, bytes], conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS applied (version INTEGER, bytes INTEGER)")
        conn.execute("INSERT INTO applied VALUES (?, ?)",
                     (manifest.version, sum(len(d) for d in parts.values())))

    def restore(_current: Manifest, manifest: Manifest | None, parts: Mapping[str, bytes],
                conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM applied")

    return lambda: BundleStore(path, root_key=root_hex, store_id=STORE, apply=apply,
                               restore=restore, clock=clock)


def _cart(tmp: Path, port: int, root_hex: str, clock: Callable[[], float]) -> CartSync:
    return CartSync(tmp / "basket.db", STORE, CART, SyncSettings(port=port),
                    bundles=_bundle_store(tmp / "bundles.db", root_hex, clock),
                    staging=tmp / "staging").start()


def _version(cart: CartSync) -> int:
    return max((int(h["version"]) for h in cart.holding() if h["type"] == "catalogue"),
               default=0)


def test_a_cart_back_after_a_day_offline_holds_the_newest_bundle_within_10_s(
    broker: Broker, tmp_path: Path
) -> None:
    hub = Hub(broker.port)
    root_hex = public_key_hex(hub.root)
    now = time.time()
    try:
        hub.release(1, issued_at=int(now) - 60)
        cart = _cart(tmp_path, broker.port, root_hex, time.time)
        wait_until(lambda: _version(cart) == 1, 10, "the first bundle")
        cart.stop()

        # A day offline: the hub releases twice meanwhile, the broker restarts.
        hub.release(2, issued_at=int(now) + DAY // 3)
        hub.release(3, issued_at=int(now) + DAY // 2)
        hub.close()
        broker.restart()
        hub = Hub(broker.port)  # (a fresh connection; nothing republished)

        a_day_later = now + DAY
        cart = _cart(tmp_path, broker.port, root_hex, lambda: time.time() - now + a_day_later)
        took = wait_until(lambda: _version(cart) == 3, 10, "the newest bundle after reconnecting")
        assert took < 10
        assert [o.version for o in cart.outcomes if o.accepted] == [3]  # straight to the newest
        cart.stop()

        # Restarted again with nothing new: nothing is applied twice.
        cart = _cart(tmp_path, broker.port, root_hex, lambda: time.time() - now + a_day_later)
        time.sleep(2.0)
        assert _version(cart) == 3 and cart.outcomes == []
        cart.stop()
    finally:
        hub.close()


def test_a_bundle_signed_by_a_stranger_is_never_applied(broker: Broker, tmp_path: Path) -> None:
    real, rogue = Hub(broker.port), Hub(broker.port, client_id="rogue")
    try:
        rogue.release(5, issued_at=int(time.time()) - 60)  # its own root: the cart trusts none
        cart = _cart(tmp_path, broker.port, public_key_hex(real.root), time.time)
        time.sleep(2.0)
        assert _version(cart) == 0 and cart.outcomes == []
        real.release(1, issued_at=int(time.time()) - 60)
        wait_until(lambda: _version(cart) == 1, 10, "the genuine bundle")
        cart.stop()
    finally:
        real.close()
        rogue.close()
