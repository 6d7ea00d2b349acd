"""The outbox reaches the hub through a real Mosquitto that is killed and restarted meanwhile.

Every row the cart wrote is committed at the hub exactly once (duplicates are
counted, not stored), and the cart deletes a row only after the hub's ack.
"""

from __future__ import annotations

import time
from pathlib import Path

from cartos.basket.events import ItemAdded, SessionOpened
from cartos.basket.store import BasketStore
from cartos.hub.service import Hub, HubSettings
from cartos.hub.store import HubStore, Received
from cartos.sync.cart_client import CartSync, SyncSettings
from tests.sync.broker import Broker
from tests.waiting import wait_until

STORE, CART = "s001", "cart-s001-0001"


def _write_corrections(path: Path, n: int, start: int = 0) -> set[str]:
    with BasketStore(path) as basket:
        if basket.session is None:
            basket.apply(SessionOpened("open", "0f1e2d3c-0000-4000-8000-000000000001"))
        for i in range(start, start + n):
            basket.apply(ItemAdded(f"answer:{i}", f"sku-{i % 7}", 1, corrects=f"prompt:{i}"))
        return {m.msg_id for m in basket.pending("corrections", limit=100_000)}




def _pending(path: Path, stream: str) -> int:
    with BasketStore(path) as basket:
        return basket.outbox_stats()[stream].pending


def test_outbox_reaches_the_hub_once_through_broker_crashes_and_a_cart_restart(
    broker: Broker, tmp_path: Path
) -> None:
    basket_db = tmp_path / "basket.db"
    sent = _write_corrections(basket_db, 300)
    hub = Hub(tmp_path / "hub.db", STORE, "hub-s001",
              HubSettings(port=broker.port)).start()
    settings = SyncSettings(port=broker.port, window=50, reconnect_max_s=1.0)
    cart = CartSync(basket_db, STORE, CART, settings).start()
    try:
        wait_until(lambda: hub.committed > 30, 20, "the first messages at the hub")
        broker.kill()  # loses whatever it had acknowledged but not saved
        time.sleep(0.3)
        broker.start()
        sent |= _write_corrections(basket_db, 100, start=300)  # written while reconnecting
        wait_until(lambda: hub.committed > 200, 30, "more messages after the broker came back")
        cart.stop()  # the cart restarts: a new uplink, the same basket file
        cart = CartSync(basket_db, STORE, CART, settings).start()
        broker.kill()
        broker.start()
        wait_until(lambda: _pending(basket_db, "corrections") == 0, 60,
              "every correction acknowledged by the hub")
    finally:
        cart.stop()
        hub.stop()
    with HubStore(tmp_path / "hub.db") as store:
        committed = store.ids("corrections")
        assert committed == sent  # nothing missing, nothing extra
        assert store.high_water(CART, "corrections") == len(sent)
    # the session row, and every item command, are in the events stream: drained too
    assert _pending(basket_db, "events") == 0


def test_hub_acks_only_a_contiguous_prefix_and_counts_repeats(tmp_path: Path) -> None:
    with HubStore(tmp_path / "hub.db") as store:
        def message(seq: int) -> Received:
            return Received(f"id-{seq}", CART, STORE, "corrections", seq, {"n": seq})

        marks, dups = store.commit([message(1), message(2), message(4)])
        assert marks == {(CART, "corrections"): 2} and dups == 0  # 3 missing: not past 2
        marks, dups = store.commit([message(3), message(4)])
        assert marks == {(CART, "corrections"): 4} and dups == 1
        assert store.counter("duplicates") == 1
        telemetry = [Received(f"t-{s}", CART, STORE, "telemetry", s, {}) for s in (5, 9)]
        marks, _ = store.commit(telemetry)  # telemetry gaps are drops: acked to the top
        assert marks == {(CART, "telemetry"): 9}


def test_an_ack_beyond_what_the_cart_wrote_is_refused_and_counted(
    broker: Broker, tmp_path: Path
) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from cartos.sync import payloads, topics

    basket_db = tmp_path / "basket.db"
    _write_corrections(basket_db, 3)
    cart = CartSync(basket_db, STORE, CART, SyncSettings(port=broker.port)).start()
    rogue = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="rogue")
    rogue.connect("127.0.0.1", broker.port)
    rogue.loop_start()
    try:
        wait_until(lambda: cart.connected, 10, "the cart to connect")
        time.sleep(0.3)
        for raw in (payloads.encode("ack", {"stream": "corrections", "upto_seq": 999,
                                            "hub_id": "hub-x"}), b"\xff\xfe not json"):
            rogue.publish(topics.ack(STORE, CART), raw, qos=1).wait_for_publish(5)
        wait_until(lambda: cart.stats.rejected_acks >= 2, 10, "both acks refused")
        assert _pending(basket_db, "corrections") == 3  # nothing deleted
    finally:
        rogue.loop_stop()
        rogue.disconnect()
        cart.stop()
