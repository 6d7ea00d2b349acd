"""Hostile payloads on every topic the hub and a cart subscribe to, through a real broker:
neither stops, every one is counted, and real traffic still flows afterwards."""

from __future__ import annotations

import json
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cartos.basket.events import ItemAdded, SessionOpened
from cartos.basket.store import BasketStore
from cartos.hub.service import Hub, HubSettings
from cartos.sync import payloads, topics
from cartos.sync.cart_client import CartSync, SyncSettings
from tests.sync.broker import Broker
from tests.waiting import wait_until

STORE, CART = "s001", "cart-s001-0009"

HOSTILE: dict[str, bytes] = {
    "not_utf8": b"\xff\xfe\xfd{\"id\": 1}",
    "deeply_nested": b"[" * 50_000 + b"]" * 50_000,
    "huge": b'{"pad": "' + b"x" * (3 * 1024 * 1024) + b'"}',
    "wrong_schema": json.dumps({"id": "x", "cart": 7, "extra": True}).encode(),
    "not_an_object": b"[1, 2, 3]",
    "empty": b"",
    "float_seq": json.dumps({"id": "a" * 32, "cart": CART, "store": STORE, "stream": "events",
                             "seq": 1.0, "body": {}, "sent_at": 1.0}).encode(),
}




def _pending(path: Path) -> int:
    with BasketStore(path) as basket:
        return basket.outbox_stats()["corrections"].pending


def test_hostile_payloads_on_every_subscribed_topic_are_counted_and_survived(
    broker: Broker, tmp_path: Path
) -> None:
    basket_db = tmp_path / "basket.db"
    with BasketStore(basket_db) as basket:
        basket.apply(SessionOpened("open", "0f1e2d3c-0000-4000-8000-00000000beef"))
    hub = Hub(tmp_path / "hub.db", STORE, "hub-s001", HubSettings(port=broker.port)).start()
    cart = CartSync(basket_db, STORE, CART, SyncSettings(port=broker.port)).start()
    attacker = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="attacker")
    attacker.connect("127.0.0.1", broker.port)
    attacker.loop_start()
    hub_topics = [*(topics.uplink(STORE, CART, s) for s in ("events", "corrections", "review",
                                                              "telemetry")),
                  topics.available(STORE, CART), topics.state(STORE, CART),
                  topics.command_response(STORE, CART)]
    cart_topics = [topics.ack(STORE, CART), topics.command_request(STORE, CART),
                   topics.bundle_manifest(STORE)]
    before = payloads.REJECTIONS.count()
    try:
        wait_until(lambda: cart.connected, 10, "the cart to connect")
        time.sleep(0.5)  # the hub's subscriptions are in place
        sent = 0
        for topic in hub_topics + cart_topics:
            for data in HOSTILE.values():
                attacker.publish(topic, data, qos=1).wait_for_publish(10)
                sent += 1
        # Everything hostile was refused: the hub counts its own, the cart the process-wide.
        wait_until(lambda: hub.rejections.count() >= len(hub_topics) * len(HOSTILE), 30,
              "the hub to refuse every hostile message")
        wait_until(lambda: payloads.REJECTIONS.count() - before >= len(cart_topics) * len(HOSTILE),
              30, "the cart to refuse every hostile message")
        assert hub.db.ids("corrections") == set()
        # And both still work: a real correction is committed once and acknowledged.
        with BasketStore(basket_db) as basket:
            basket.apply(ItemAdded("answer:1", "sku-1", 1, corrects="prompt:1"))
        wait_until(lambda: _pending(basket_db) == 0, 20, "the correction to be acknowledged")
        assert len(hub.db.ids("corrections")) == 1
        assert cart.connected and sent == len(HOSTILE) * (len(hub_topics) + len(cart_topics))
    finally:
        attacker.loop_stop()
        attacker.disconnect()
        cart.stop()
        hub.stop()
