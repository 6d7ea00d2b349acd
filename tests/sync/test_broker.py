"""The Mosquitto helper against paho-mqtt 2.x: restarts, crashes, partitions, hostile traffic.

These are also the facts the sync protocol is built on: a clean broker stop
keeps retained messages, a crash loses what the broker had already PUBACKed,
a stalled broker delays rather than drops, a last will announces a vanished
cart, and junk on a subscribed topic is counted without stopping the loop.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from cartos.sync import payloads, topics
from cartos.sync.errors import PayloadRejected
from cartos.sync.payloads import RejectionCounter, decode_message, encode
from cartos.sync.topics import Kind
from tests.sync.broker import Broker
from tests.sync.conftest import require_mosquitto

STORE = "store-042"
WAIT = 10.0
"""Longest wait for something that must happen (generous: CI machines stall)."""
QUIET = 1.0
"""How long to watch for something that must not happen."""


class Peer:
    """A paho 2.x client with its network loop in a thread and a queue of received messages."""

    def __init__(self, broker: Broker, client_id: str, *, clean: bool = True) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean,
            protocol=mqtt.MQTTv311,
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.subscribed = threading.Event()
        self.errors: list[BaseException] = []
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.broker = broker

    def connect(self) -> Peer:
        self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(WAIT), "no CONNACK"
        return self

    # paho 2.x (CallbackAPIVersion.VERSION2) callback signatures
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: mqtt.ReasonCode,
        properties: mqtt.Properties | None,
    ) -> None:
        if not reason_code.is_failure:
            self.disconnected.clear()
            self.connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: mqtt.ReasonCode,
        properties: mqtt.Properties | None,
    ) -> None:
        self.connected.clear()
        self.disconnected.set()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[mqtt.ReasonCode],
        properties: mqtt.Properties | None,
    ) -> None:
        if not any(code.is_failure for code in reason_codes):
            self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put(message)

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        self.subscribed.clear()
        result, _mid = self.client.subscribe(topic_filter, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert self.subscribed.wait(WAIT), "no SUBACK"

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """QoS 1 publish that returns once the broker's PUBACK arrived."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(WAIT)
        assert info.is_published(), "no PUBACK"

    def get(self, timeout: float = WAIT) -> mqtt.MQTTMessage | None:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self, quiet: float = QUIET) -> list[mqtt.MQTTMessage]:
        """Everything that arrives until nothing has for ``quiet`` seconds."""
        out = []
        while (message := self.get(quiet)) is not None:
            out.append(message)
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture()
def peers(broker: Broker) -> Any:
    """Factory for connected peers, all closed after the test."""
    made: list[Peer] = []

    def make(client_id: str, **kwargs: Any) -> Peer:
        peer = Peer(broker, client_id, **kwargs).connect()
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()


def state_payload(cart: str, status: str) -> bytes:
    return encode(
        Kind.STATE, {"cart": cart, "store": STORE, "sent_at": time.time(), "status": status}
    )


def test_broker_starts_and_relays_qos1(broker: Broker, peers: Any) -> None:
    assert broker.running and broker.pid is not None
    hub = peers("hub")
    hub.subscribe(topics.hub_subscriptions(STORE)[0].filter)
    cart = peers("cart-a")
    topic = topics.uplink(STORE, "cart-a", "events")
    cart.publish(topic, b"hello")
    message = hub.get()
    assert message is not None and message.topic == topic and message.payload == b"hello"
    assert message.qos == 1


def test_retained_message_survives_a_clean_stop(broker: Broker, peers: Any) -> None:
    topic = topics.state(STORE, "cart-a")
    payload = state_payload("cart-a", "shopping")
    cart = peers("cart-a")
    cart.publish(topic, payload, retain=True)
    cart.close()

    assert broker.stop() == 0
    assert broker.db_path.is_file()  # SIGTERM writes the persistence file
    broker.start()

    hub = peers("hub")
    hub.subscribe(topic)
    message = hub.get()
    assert message is not None and message.retain and message.payload == payload


def test_kill_9_loses_what_the_broker_acknowledged_since_its_last_save(
    broker: Broker, peers: Any
) -> None:
    """A PUBACK is not durability: the broker acknowledged B, then lost it in a crash."""
    saved, lost = topics.state(STORE, "cart-a"), topics.state(STORE, "cart-b")
    first = peers("cart-a")
    first.publish(saved, state_payload("cart-a", "idle"), retain=True)
    first.close()
    broker.restart()  # clean: A is in the persistence file

    second = peers("cart-b")
    second.publish(lost, state_payload("cart-b", "idle"), retain=True)  # PUBACKed ...
    broker.kill()  # ... then a power cut before the next save
    broker.start()

    hub = peers("hub")
    hub.subscribe(f"cartos/v1/{STORE}/+/state")
    topics_seen = {m.topic for m in hub.drain()}
    assert topics_seen == {saved}


def test_without_persistence_retained_messages_do_not_survive_a_restart(tmp_path: Path) -> None:
    exe = require_mosquitto()
    with Broker(tmp_path / "volatile", persistence=False, executable=exe) as volatile:
        cart = Peer(volatile, "cart-a").connect()
        cart.publish(topics.state(STORE, "cart-a"), state_payload("cart-a", "idle"), retain=True)
        cart.close()
        port = volatile.port
        volatile.restart()
        assert volatile.port == port and not volatile.db_path.exists()
        hub = Peer(volatile, "hub").connect()
        try:
            hub.subscribe(f"cartos/v1/{STORE}/#")
            assert hub.drain() == []
        finally:
            hub.close()


def test_pause_blocks_delivery_and_resume_delivers(broker: Broker, peers: Any) -> None:
    topic = topics.uplink(STORE, "cart-a", "corrections")
    hub = peers("hub")
    hub.subscribe(topic)
    cart = peers("cart-a")

    broker.pause()
    info = cart.client.publish(topic, b"during the partition", qos=1)
    assert hub.get(QUIET) is None  # nothing moves while the broker is frozen
    assert not info.is_published()  # and no PUBACK either
    broker.resume()

    message = hub.get()
    assert message is not None and message.payload == b"during the partition"
    info.wait_for_publish(WAIT)
    assert info.is_published()


def test_clients_reconnect_after_a_restart_on_the_same_port(broker: Broker, peers: Any) -> None:
    hub = peers("hub", clean=False)
    hub.subscribe(topics.uplink(STORE, "cart-a", "review"), qos=1)
    broker.restart()
    assert hub.disconnected.wait(WAIT), "paho did not notice the restart"
    assert hub.connected.wait(WAIT + 5), "paho did not reconnect"
    cart = peers("cart-a")
    cart.publish(topics.uplink(STORE, "cart-a", "review"), b"after restart")
    message = hub.get()  # the persistent session kept the subscription across the restart
    assert message is not None and message.payload == b"after restart"


def test_last_will_marks_a_vanished_cart_offline(broker: Broker, peers: Any) -> None:
    hub = peers("hub")
    hub.subscribe(topics.available(STORE, "cart-a"))
    will = encode(
        Kind.AVAILABLE,
        {"cart": "cart-a", "store": STORE, "status": "offline", "sent_at": time.time()},
    )
    online = encode(
        Kind.AVAILABLE,
        {"cart": "cart-a", "store": STORE, "status": "online", "sent_at": time.time()},
    )
    topic = topics.available(STORE, "cart-a")
    script = textwrap.dedent(
        f"""
        import time
        import paho.mqtt.client as mqtt
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cart-a")
        c.will_set({topic!r}, {will!r}, qos=1, retain=True)
        c.connect({broker.host!r}, {broker.port}, keepalive=30)
        c.loop_start()
        c.publish({topic!r}, {online!r}, qos=1, retain=True).wait_for_publish(10)
        print("up", flush=True)
        time.sleep(60)
        """
    )
    cart = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert cart.stdout is not None and cart.stdout.readline() == b"up\n"
        first = hub.get()
        assert first is not None and first.payload == online
        cart.kill()  # no DISCONNECT: the broker sees the socket close and sends the will
        cart.wait(WAIT)
    finally:
        if cart.poll() is None:
            cart.kill()
            cart.wait(WAIT)
    message = hub.get()
    assert message is not None and message.payload == will
    later = peers("late-hub")
    later.subscribe(topic)
    retained = later.get()
    assert retained is not None and retained.retain and retained.payload == will


def test_hostile_traffic_on_subscribed_topics_is_counted_and_survived(
    broker: Broker, peers: Any
) -> None:
    """The hub's message loop keeps going through junk and still decodes the next good message."""
    counter = RejectionCounter()
    good: queue.Queue[dict[str, Any]] = queue.Queue()
    hub = Peer(broker, "hub")

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            _topic, payload = decode_message(message.topic, message.payload, counter=counter)
        except PayloadRejected:
            return
        good.put(payload)

    hub.client.on_message = on_message
    hub.connect()
    try:
        _exchange_hostile_traffic(hub, peers, counter, good)
    finally:
        hub.close()


def _exchange_hostile_traffic(
    hub: Peer, peers: Any, counter: RejectionCounter, good: queue.Queue[dict[str, Any]]
) -> None:
    for sub in topics.hub_subscriptions(STORE):
        hub.subscribe(sub.filter, sub.qos)

    attacker = peers("cart-x")
    events = topics.uplink(STORE, "cart-x", "events")
    junk: list[tuple[str, bytes]] = [
        (events, b"\xff\xfe\x00"),
        (events, b"[" * 100_000),
        (events, b"{" * (10 * 1024 * 1024)),
        (events, b'{"id": NaN}'),
        (events, b'{"id": "a", "id": "b"}'),
        (events, b"{}"),
        (topics.state(STORE, "cart-x"), b"null"),
        (topics.command_response(STORE, "cart-x"), b'{"status": "maybe"}'),
        (f"cartos/v1/{STORE}/bundles/available", b"{}"),  # reserved name: not a cart topic
    ]
    for topic, payload in junk:
        attacker.publish(topic, payload)
    envelope = {
        "cart": "cart-x",
        "store": STORE,
        "stream": "events",
        "seq": 1,
        "sent_at": time.time(),
        "body": {"type": "item_added"},
    }
    attacker.publish(events, encode(Kind.UPLINK, {**envelope, "cart": "cart-y"}))  # spoofed
    attacker.publish(events, encode(Kind.UPLINK, envelope))

    decoded = good.get(timeout=WAIT)
    assert decoded["cart"] == "cart-x" and decoded["seq"] == 1
    assert good.empty()
    assert counter.snapshot() == {
        ("uplink", "not_utf8"): 1,
        ("uplink", "too_deep"): 1,
        ("uplink", "too_large"): 1,
        ("uplink", "non_finite"): 1,
        ("uplink", "duplicate_key"): 1,
        ("uplink", "schema"): 1,
        ("uplink", "mismatch"): 1,
        ("state", "schema"): 1,
        ("cmd_res", "schema"): 1,
        ("unknown", "bad_topic"): 1,
    }
    assert hub.connected.is_set()
    assert set(payloads.REASONS) >= {reason for _kind, reason in counter.snapshot()}
