"""Transport security on a real Mosquitto: TLS client certificates and the shipped ACL.

The broker runs ``packaging/mosquitto/mosquitto.conf`` and ``packaging/mosquitto/acl``
(see ``tls_broker.py``); the key material comes from :mod:`cartos.sync.pki`. Each
row of the tables below is one claim of the security design, checked against the
broker rather than against our reading of its manual.

How a denial is proven. Mosquitto drops a forbidden PUBLISH without telling an
MQTT 3.1.1 client (the PUBACK still says success), so non-delivery is observed:
a privileged subscriber (the hub, reading ``cartos/v1/s001/#``) would receive the
message if the broker had accepted it. To know *when* to stop waiting, a fence
follows: once the forbidden PUBLISH is acknowledged the broker has routed it, and
the hub then publishes a marker that travels the same queue to the observer; the
marker's arrival without the probe before it proves the probe was dropped (the
broker delivers one subscriber's messages in order). MQTT 5 clients additionally
get PUBACK reason 0x87 (not authorised), and the broker log names the client it
denied, which shows the identity it used was the certificate's.

Reading is enforced per message, not per subscription: Mosquitto 2.0's ACL file
grants every SUBSCRIBE (its source says "FIXME - implement ACL subscription
strings"; SUBACK 0x80/0x87 never comes) and checks read access on each message
it would deliver, retained ones included. So a subscribe row is proven the same
way, by a real message that must (not) arrive before the fence.
"""

from __future__ import annotations

import datetime as dt
import ssl
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from cartos.sync import pki, topics
from cartos.sync.bundles import (
    BundleStore,
    Manifest,
    build_manifest,
    generate_private_key,
    issue_signing_key,
    part_ref,
    public_key_hex,
    sign_manifest,
)
from cartos.sync.errors import CertificateRevocationError, IdentityError, PkiError
from tests.sync.tls_broker import (
    EXAMPLE_STORE,
    SHIPPED_ACL,
    ClientFiles,
    StorePki,
    TlsBroker,
    require_broker,
)

STORE = EXAMPLE_STORE
OTHER_STORE = "s002"
CART_A = pki.cart_identity(STORE, 1)
CART_B = pki.cart_identity(STORE, 2)
HUB = pki.hub_identity(STORE)
ROOT = topics.ROOT
BUNDLE_CHUNK = topics.bundle_chunk(STORE, "2026.11.1", "catalog", 0)

NOT_AUTHORIZED = 0x87
SUBACK_FAILURE_V311 = 0x80
TIMEOUT = 5.0


def unique(label: str) -> bytes:
    """A payload no other case sends, so a stray delivery cannot be mistaken for this one."""
    return f"{label}-{uuid.uuid4().hex}".encode()


# -- an instrumented MQTT client -------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How a connection attempt ended: CONNACK success, or where and why it did not."""

    connected: bool
    detail: str


class Probe:
    """A paho-mqtt 2.x client that records what the broker answered, for assertions.

    Connecting runs the network loop by hand until CONNACK or a failure, so a
    refused client is not retried in the background; once connected, paho's
    own thread takes over.
    """

    def __init__(
        self,
        broker: TlsBroker,
        files: ClientFiles | None,
        *,
        client_id: str,
        protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
        username: str | None = None,
        tls: bool = True,
    ) -> None:
        self.broker = broker
        self.protocol = protocol
        # No automatic reconnect: a refused or kicked client must stay visible as such.
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            reconnect_on_failure=False,
        )
        if tls:
            self.client.tls_set(
                ca_certs=str(broker.store_pki.ca_cert),
                certfile=str(files.cert) if files else None,
                keyfile=str(files.key) if files else None,
            )
        if username is not None:
            self.client.username_pw_set(username, "ignored-by-the-broker")
        self._cond = threading.Condition()
        self.messages: list[tuple[str, bytes]] = []
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.pubacks: dict[int, ReasonCode] = {}
        self.connack: ReasonCode | None = None
        self.disconnected: str | None = None
        self.log: list[str] = []
        self._looping = False
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_log = self._on_log

    # callbacks (paho's network thread)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        with self._cond:
            self.connack = rc
            self._cond.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        with self._cond:
            self.disconnected = str(rc)
            self._cond.notify_all()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((message.topic, bytes(message.payload)))
            self._cond.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: list[ReasonCode], _p: Any) -> None:
        with self._cond:
            self.subacks[mid] = list(codes)
            self._cond.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        with self._cond:
            self.pubacks[mid] = rc
            self._cond.notify_all()

    def _on_log(self, _c: Any, _u: Any, _level: int, text: str) -> None:
        with self._cond:
            self.log.append(text)

    # operations

    def connect(self, timeout: float = TIMEOUT) -> Outcome:
        """Connect and wait for CONNACK; report a TLS or MQTT refusal instead of raising."""
        try:
            self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        except (ssl.SSLError, OSError) as exc:
            return Outcome(False, f"during the TLS handshake: {type(exc).__name__}: {exc}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.connack is None:
            if self.client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                break
        if self.connack is None:
            return Outcome(
                False, f"no CONNACK ({self.disconnected}); client log: {' | '.join(self.log)}"
            )
        if self.connack.is_failure:
            return Outcome(False, f"CONNACK {self.connack}")
        self.client.loop_start()
        self._looping = True
        return Outcome(True, "CONNACK success")

    def connected(self) -> Probe:
        """Connect, failing the test if the broker refuses."""
        outcome = self.connect()
        assert outcome.connected, outcome.detail
        return self

    def subscribe(self, topic_filter: str) -> ReasonCode:
        """Subscribe at QoS 1 and return the broker's SUBACK code for this filter."""
        result, mid = self.client.subscribe(topic_filter, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS and mid is not None, result
        with self._cond:
            assert self._cond.wait_for(lambda: mid in self.subacks, TIMEOUT), "no SUBACK"
            return self.subacks[mid][0]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> ReasonCode:
        """Publish at QoS 1 and return the PUBACK reason (always success under 3.1.1)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, info.rc
        with self._cond:
            assert self._cond.wait_for(lambda: info.mid in self.pubacks, TIMEOUT), "no PUBACK"
            return self.pubacks[info.mid]

    def wait_for(self, payload: bytes, timeout: float = TIMEOUT) -> bool:
        """Whether a message with ``payload`` arrives within ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: self.got(payload), timeout)

    def got(self, payload: bytes) -> bool:
        """Whether a message with ``payload`` has arrived."""
        with self._cond:
            return any(p == payload for _, p in self.messages)

    def still_connected(self) -> bool:
        """No disconnect was reported since CONNACK."""
        with self._cond:
            return self.disconnected is None

    def close(self) -> None:
        """Disconnect cleanly and stop paho's thread."""
        self.client.disconnect()
        if self._looping:
            self.client.loop_stop()
            self._looping = False


# -- fixtures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Store:
    """The test store: its PKI, the clients' certificates and the running broker."""

    pki: StorePki
    broker: TlsBroker
    files: dict[str, ClientFiles]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A broker with the shipped config and ACL, a hub and carts 1 and 2 of store s001."""
    require_broker()
    root = tmp_path_factory.mktemp("acl")
    store_pki = StorePki.create(root / "pki")
    files = {"hub": store_pki.hub(), "cart A": store_pki.cart(1), "cart B": store_pki.cart(2)}
    broker = TlsBroker(store_pki, root / "broker")
    broker.start()
    try:
        yield Store(store_pki, broker, files)
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def hub(store: Store) -> Iterator[Probe]:
    """The privileged observer: the hub, subscribed to everything of its store."""
    probe = Probe(store.broker, store.files["hub"], client_id=HUB).connected()
    assert not probe.subscribe(f"{ROOT}/{STORE}/#").is_failure
    yield probe
    probe.close()


@dataclass(frozen=True)
class Actor:
    """Who connects: which certificate, and what client id / username it claims."""

    cert: str
    client_id: str
    username: str | None = None

    @property
    def identity(self) -> str:
        """The identity the broker will use: the certificate's CN, whatever was claimed."""
        return {"cart A": CART_A, "cart B": CART_B, "hub": HUB}[self.cert]


ACTORS: dict[str, Actor] = {
    "cart A": Actor("cart A", CART_A),
    "cart B": Actor("cart B", CART_B),
    "cart A with cart B's client id": Actor("cart A", CART_B),
    "cart A with the hub's username": Actor("cart A", HUB, username=HUB),
    "hub": Actor("hub", HUB),
}

PROTOCOLS = {"MQTT3.1.1": mqtt.MQTTv311, "MQTT5": mqtt.MQTTv5}


def matrix(rules: list[Pub] | list[Sub]) -> list[Any]:
    """Every row under both protocol versions; hub rows once (the hub session speaks MQTT 5)."""
    return [
        pytest.param(rule, protocol, id=f"{rule.id}-{name}")
        for rule in rules
        for name, protocol in PROTOCOLS.items()
        if rule.actor != "hub" or protocol == mqtt.MQTTv5
    ]


def open_actor(store: Store, hub: Probe, name: str, protocol: MQTTProtocolVersion) -> Probe:
    """A connected client for ``name``; the hub row reuses the observer (one hub session)."""
    if name == "hub":
        return hub
    actor = ACTORS[name]
    return Probe(
        store.broker,
        store.files[actor.cert],
        client_id=actor.client_id,
        username=actor.username,
        protocol=protocol,
    ).connected()


def fence(hub: Probe, observer: Probe, topic: str) -> None:
    """Hub publishes a marker on ``topic`` and ``observer`` must receive it (see module doc)."""
    marker = unique("fence")
    assert not hub.publish(topic, marker).is_failure
    assert observer.wait_for(marker), f"fence on {topic} never arrived: observation is broken"


# -- the ACL matrix: publish -------------------------------------------------------------


@dataclass(frozen=True)
class Pub:
    """``actor`` publishes on ``topic``; the broker must deliver it iff ``allowed``.

    For a topic outside ``cartos/v1/s001/`` no identity may subscribe, so the hub's
    non-delivery check is vacuous there; the PUBACK code and the broker log still
    show the denial.
    """

    actor: str
    topic: str
    allowed: bool
    why: str

    @property
    def id(self) -> str:
        verdict = "allowed" if self.allowed else "DENIED"
        return f"{self.actor} writes {self.topic}: {verdict}"


PUBLISH_MATRIX = [
    # A cart writes its own uplink, in its own store.
    *(
        Pub("cart A", topics.uplink(STORE, CART_A, s), True, "own outbox stream")
        for s in topics.UPLINK_STREAMS
    ),
    Pub("cart A", topics.available(STORE, CART_A), True, "own availability (its last will)"),
    Pub("cart A", topics.state(STORE, CART_A), True, "own state"),
    Pub("cart A", topics.command_response(STORE, CART_A), True, "own command responses"),
    # ... and nothing else.
    Pub("cart A", topics.uplink(STORE, CART_B, "events"), False, "another cart's uplink"),
    Pub("cart A", topics.available(STORE, CART_B), False, "forging another cart's will"),
    Pub("cart A", topics.state(STORE, CART_B), False, "another cart's state"),
    Pub("cart A", topics.command_response(STORE, CART_B), False, "answering for another cart"),
    Pub("cart A", topics.ack(STORE, CART_A), False, "acks come from the hub only"),
    Pub("cart A", topics.command_request(STORE, CART_A), False, "commands come from the hub"),
    Pub("cart A", topics.ack(STORE, CART_B), False, "acking another cart's outbox"),
    Pub("cart A", topics.command_request(STORE, CART_B), False, "commanding another cart"),
    Pub("cart A", topics.bundle_manifest(STORE), False, "only the hub writes bundles"),
    Pub("cart A", BUNDLE_CHUNK, False, "only the hub writes bundle chunks"),
    Pub("cart A", f"{ROOT}/{OTHER_STORE}/{CART_A}/events", False, "own id, other store"),
    Pub("cart A", topics.uplink(STORE, CART_A, "events") + "/x", False, "below its topics"),
    # The client id is the client's claim, not its identity.
    *(
        Pub("cart A with cart B's client id", topic, False, "identity is the certificate CN")
        for topic in (
            topics.uplink(STORE, CART_B, "events"),
            topics.available(STORE, CART_B),
            topics.command_response(STORE, CART_B),
        )
    ),
    # So is the MQTT username: the certificate's CN replaces it.
    *(
        Pub("cart A with the hub's username", topic, False, "identity is the certificate CN")
        for topic in (topics.bundle_manifest(STORE), topics.ack(STORE, CART_B))
    ),
    # The hub writes downlink and bundles, never a cart's uplink.
    Pub("hub", topics.ack(STORE, CART_A), True, "acks"),
    Pub("hub", topics.command_request(STORE, CART_A), True, "commands"),
    Pub("hub", topics.bundle_manifest(STORE), True, "bundle manifest"),
    Pub("hub", BUNDLE_CHUNK, True, "bundle chunks"),
    Pub("hub", topics.uplink(STORE, CART_A, "events"), False, "forging a cart's uplink"),
]


@pytest.mark.parametrize(("rule", "protocol"), matrix(PUBLISH_MATRIX))
def test_publish_matrix(store: Store, hub: Probe, rule: Pub, protocol: MQTTProtocolVersion) -> None:
    """One row of the write side of the ACL, proven by delivery to (or absence at) the hub."""
    actor = open_actor(store, hub, rule.actor, protocol)
    log_start = len(store.broker.log_text())
    payload = unique("probe")
    try:
        puback = actor.publish(rule.topic, payload)
        fence(hub, hub, topics.ack(STORE, CART_A))
        denied_line = f"Denied PUBLISH from {ACTORS[rule.actor].identity}"
        if rule.allowed:
            assert not puback.is_failure, puback
            assert hub.got(payload), f"{rule.why}: not delivered to the hub"
            assert denied_line not in store.broker.log_text()[log_start:]
        else:
            assert not hub.got(payload), f"{rule.why}: the hub received it"
            if protocol == mqtt.MQTTv5:
                assert puback.value == NOT_AUTHORIZED, puback
            else:
                assert not puback.is_failure  # 3.1.1: silently dropped
            # The broker names who it denied: the certificate's identity, whatever
            # client id or username the client claimed.
            assert store.broker.wait_for_log(denied_line, start=log_start), denied_line
            assert f"'{rule.topic}'" in store.broker.log_text()[log_start:]
    finally:
        if actor is not hub:
            actor.close()


# -- the ACL matrix: subscribe -----------------------------------------------------------


@dataclass(frozen=True)
class Sub:
    """``actor`` subscribes to ``filter``; ``feeder`` publishes on ``probe_topic``.

    With ``retained`` the feeder publishes first, as a retained message, which the
    broker hands to the subscriber at SUBSCRIBE time (state, availability and
    bundles are retained in the protocol).
    """

    actor: str
    filter: str
    allowed: bool
    feeder: str
    probe_topic: str = ""
    retained: bool = False

    @property
    def topic(self) -> str:
        return self.probe_topic or self.filter

    @property
    def id(self) -> str:
        verdict = "allowed" if self.allowed else "DENIED"
        retained = " (retained)" if self.retained else ""
        return f"{self.actor} reads {self.filter}{retained}: {verdict}"


SUBSCRIBE_MATRIX = [
    # A cart reads its own downlink and the store's bundles ...
    Sub("cart A", topics.ack(STORE, CART_A), True, "hub"),
    Sub("cart A", topics.command_request(STORE, CART_A), True, "hub"),
    Sub("cart A", topics.bundle_manifest(STORE), True, "hub"),
    Sub("cart A", topics.bundle_parts_filter(STORE), True, "hub", BUNDLE_CHUNK),
    Sub("cart A", topics.bundle_manifest(STORE), True, "hub", retained=True),
    # ... and nothing of another cart, nor wildcards that would cover other carts.
    Sub("cart A", topics.ack(STORE, CART_B), False, "hub"),
    Sub("cart A", topics.command_request(STORE, CART_B), False, "hub"),
    Sub("cart A", topics.uplink(STORE, CART_B, "events"), False, "cart B"),
    Sub("cart A", topics.state(STORE, CART_B), False, "cart B"),
    Sub("cart A", topics.state(STORE, CART_B), False, "cart B", retained=True),
    Sub(
        "cart A",
        f"{ROOT}/{STORE}/+/available",
        False,
        "cart B",
        topics.available(STORE, CART_B),
        retained=True,
    ),
    Sub("cart A", f"{ROOT}/{STORE}/+/ack", False, "hub", topics.ack(STORE, CART_B)),
    Sub("cart A", f"{ROOT}/{STORE}/#", False, "hub", topics.ack(STORE, CART_B)),
    Sub("cart A", "#", False, "hub", topics.ack(STORE, CART_B)),
    # Uplink is write-only, even a cart's own.
    Sub("cart A", topics.uplink(STORE, CART_A, "events"), False, "cart A"),
    # A claimed client id or username changes nothing.
    Sub("cart A with cart B's client id", topics.ack(STORE, CART_B), False, "hub"),
    Sub("cart A with cart B's client id", topics.command_request(STORE, CART_B), False, "hub"),
    Sub(
        "cart A with the hub's username",
        f"{ROOT}/{STORE}/+/events",
        False,
        "cart B",
        topics.uplink(STORE, CART_B, "events"),
    ),
]


@pytest.mark.parametrize(("rule", "protocol"), matrix(SUBSCRIBE_MATRIX))
def test_subscribe_matrix(
    store: Store, hub: Probe, rule: Sub, protocol: MQTTProtocolVersion
) -> None:
    """One row of the read side: a real message on the topic must (not) reach the reader."""
    actor = open_actor(store, hub, rule.actor, protocol)
    own_ack = topics.ack(STORE, ACTORS[rule.actor].identity)
    feeder: Probe | None = None
    source = hub if rule.feeder == "hub" else actor
    payload = unique("probe")
    try:
        if rule.feeder not in ("hub", rule.actor):
            feeder = source = open_actor(store, hub, rule.feeder, mqtt.MQTTv5)
        assert not actor.subscribe(own_ack).is_failure  # the fence's channel
        if rule.retained:
            assert not source.publish(rule.topic, payload, retain=True).is_failure
            suback = actor.subscribe(rule.filter)
        else:
            suback = actor.subscribe(rule.filter)
            assert not source.publish(rule.topic, payload).is_failure, "feeder may write here"
        fence(hub, actor, own_ack)
        if rule.allowed:
            assert not suback.is_failure, suback
            assert actor.got(payload), "not delivered"
        else:
            assert not actor.got(payload), "delivered despite the ACL"
            if suback.is_failure:  # not with Mosquitto 2.0 (see the module docstring)
                expected = NOT_AUTHORIZED if protocol == mqtt.MQTTv5 else SUBACK_FAILURE_V311
                assert suback.value == expected, suback
    finally:
        if rule.retained:  # clear it, so later rows start from an empty retained store
            source.publish(rule.topic, b"", retain=True)
        if feeder is not None:
            feeder.close()
        actor.close()


# -- identity is the certificate ---------------------------------------------------------


def test_spoofed_client_id_cannot_take_over_another_carts_session(store: Store, hub: Probe) -> None:
    """Cart A claiming cart B's client id neither disconnects B nor receives B's messages.

    ``use_username_as_clientid`` replaces the claimed id by the certificate CN,
    so the broker sees two different clients; without it, the second CONNECT
    would take over B's (persistent) session.
    """
    cart_b = Probe(store.broker, store.files["cart B"], client_id=CART_B).connected()
    spoofer = Probe(store.broker, store.files["cart A"], client_id=CART_B).connected()
    try:
        assert not cart_b.subscribe(topics.ack(STORE, CART_B)).is_failure
        spoofer.subscribe(topics.ack(STORE, CART_B))  # granted, but read is checked per message
        assert not spoofer.subscribe(topics.ack(STORE, CART_A)).is_failure
        payload = unique("for-b")
        hub.publish(topics.ack(STORE, CART_B), payload)
        assert cart_b.wait_for(payload)
        fence(hub, spoofer, topics.ack(STORE, CART_A))
        assert not spoofer.got(payload)
        assert cart_b.still_connected(), "cart B was kicked off by a client id claim"
        assert spoofer.still_connected()
    finally:
        spoofer.close()
        cart_b.close()


@pytest.mark.parametrize(
    ("owner", "allowed"), [(CART_A, True), (CART_B, False)], ids=["own: allowed", "B's: DENIED"]
)
def test_last_will_only_on_own_availability(
    store: Store, hub: Probe, owner: str, allowed: bool
) -> None:
    """Cart A's last will is published only on its own ``available`` topic.

    Mosquitto accepts the CONNECT and checks the will when it fires, so a will
    aimed at cart B's availability (announcing B offline) is silently dropped.
    """
    will = unique("will")
    probe = Probe(store.broker, store.files["cart A"], client_id=CART_A)
    probe.client.will_set(topics.available(STORE, owner), will, qos=1)
    log_start = len(store.broker.log_text())
    assert probe.connect().connected
    probe.client.loop_stop()
    probe._looping = False
    sock = probe.client.socket()
    assert sock is not None
    sock.close()  # vanish without DISCONNECT: the will fires
    closed = f"Client {CART_A} closed its connection"
    assert store.broker.wait_for_log(closed, start=log_start)
    fence(hub, hub, topics.ack(STORE, CART_A))
    assert hub.got(will) is allowed
    probe.close()


def test_without_username_as_clientid_the_acl_still_holds_but_sessions_can_be_hijacked(
    tmp_path: Path,
) -> None:
    """Each of the two defences on its own: why the shipped config sets both.

    With ``use_username_as_clientid false`` the ACL (``%u``) alone still keeps
    cart A out of cart B's topics, but a claimed client id now disconnects B.
    """
    require_broker()
    store_pki = StorePki.create(tmp_path / "pki")
    hub_files, a, b = store_pki.hub(), store_pki.cart(1), store_pki.cart(2)
    broker = TlsBroker(
        store_pki, tmp_path / "broker", overrides={"use_username_as_clientid": "false"}
    )
    broker.start()
    probes: list[Probe] = []
    try:
        hub = Probe(broker, hub_files, client_id=HUB).connected()
        probes.append(hub)
        assert not hub.subscribe(f"{ROOT}/{STORE}/#").is_failure
        cart_b = Probe(broker, b, client_id=CART_B).connected()
        probes.append(cart_b)
        spoofer = Probe(broker, a, client_id=CART_B).connected()
        probes.append(spoofer)
        with cart_b._cond:
            assert cart_b._cond.wait_for(lambda: cart_b.disconnected is not None, TIMEOUT)
        payload = unique("spoof")
        assert spoofer.publish(topics.uplink(STORE, CART_B, "events"), payload).value == (
            NOT_AUTHORIZED
        )
        fence(hub, hub, topics.ack(STORE, CART_A))
        assert not hub.got(payload)
    finally:
        for probe in probes:
            probe.close()
        broker.stop()


# -- who may connect at all ---------------------------------------------------------------


@dataclass(frozen=True)
class Conn:
    """A client that must be refused during the TLS handshake, before MQTT starts."""

    name: str
    broker_says: str
    """The OpenSSL error Mosquitto logs for it. The client often sees only an EOF (the
    broker closes before its alert is read), so the broker's side is what is checked."""


NO_CERT = "peer did not return a certificate"
VERIFY_FAILED = "certificate verify failed"

CONNECT_MATRIX = [
    Conn("no client certificate", NO_CERT),
    Conn("no certificate, hub's username and a password", NO_CERT),
    Conn("plain MQTT, no TLS", "wrong version number"),
    Conn("cart certificate of another store's CA", VERIFY_FAILED),
    Conn("hub certificate of an impostor CA with the same name", VERIFY_FAILED),
    Conn("expired cart certificate", VERIFY_FAILED),
    Conn("broker's server certificate used as a client", VERIFY_FAILED),
]


def refused_client(store: Store, name: str, tmp: Path) -> Probe:
    """Build the client of CONNECT_MATRIX row ``name``."""
    broker = store.broker
    if name == "no client certificate":
        return Probe(broker, None, client_id=CART_A)
    if name == "no certificate, hub's username and a password":
        return Probe(broker, None, client_id=HUB, username=HUB)
    if name == "plain MQTT, no TLS":
        return Probe(broker, None, client_id=CART_A, tls=False)
    if name == "cart certificate of another store's CA":
        other = StorePki.create(tmp / "other", OTHER_STORE)
        return Probe(broker, other.cart(1), client_id=pki.cart_identity(OTHER_STORE, 1))
    if name == "hub certificate of an impostor CA with the same name":
        impostor = StorePki.create(tmp / "impostor", STORE)
        assert impostor.ca.certificate.subject == store.pki.ca.certificate.subject
        return Probe(broker, impostor.hub(), client_id=HUB)
    if name == "expired cart certificate":
        past = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
        expired = store.pki.cart(3, valid_days=1, now=past, name="expired")
        return Probe(broker, expired, client_id=expired.identity)
    if name == "broker's server certificate used as a client":
        files = ClientFiles(
            "server",
            store.pki.server_cert,
            store.pki.server_key,
            pki.load_credential(store.pki.server_cert, store.pki.server_key),
        )
        return Probe(broker, files, client_id="localhost")
    raise AssertionError(name)


@pytest.mark.parametrize("case", CONNECT_MATRIX, ids=lambda c: f"{c.name}: REFUSED")
def test_connect_refused(store: Store, case: Conn, tmp_path: Path) -> None:
    """Clients without a valid certificate of this store's CA never reach MQTT."""
    probe = refused_client(store, case.name, tmp_path)
    log_start = len(store.broker.log_text())
    try:
        outcome = probe.connect()
    finally:
        probe.close()
    assert not outcome.connected, f"{case.name} was let in"
    assert probe.connack is None, f"refused after MQTT started: {outcome.detail}"
    assert store.broker.wait_for_log(case.broker_says, start=log_start), outcome.detail


# -- revocation ----------------------------------------------------------------------------


def test_revoked_certificate_is_refused_after_the_broker_reloads_the_crl(
    tmp_path: Path,
) -> None:
    """Revoking cart 3 locks it out for new connections once the broker reads the CRL.

    Also pins what operators must know: a connection that is already up
    survives a reload, so revocation is completed by a restart, after which the
    cart's reconnect is refused while everyone else (and retained bundles) is fine.
    """
    require_broker()
    store_pki = StorePki.create(tmp_path / "pki")
    hub_files, cart3, cart4 = store_pki.hub(), store_pki.cart(3), store_pki.cart(4)
    broker = TlsBroker(store_pki, tmp_path / "broker")
    broker.start()
    probes: list[Probe] = []

    def attempt(files: ClientFiles) -> Outcome:
        probe = Probe(broker, files, client_id=files.identity)
        probes.append(probe)
        return probe.connect()

    try:
        hub = Probe(broker, hub_files, client_id=HUB).connected()
        probes.append(hub)
        manifest = unique("manifest")
        assert not hub.publish(topics.bundle_manifest(STORE), manifest, retain=True).is_failure
        live = Probe(broker, cart3, client_id=cart3.identity).connected()
        probes.append(live)

        crl = pki.revoke(
            store_pki.ca,
            store_pki.crl,
            cart3.credential.certificate,
            reason=x509.ReasonFlags.key_compromise,
        )
        assert pki.is_revoked(crl, cart3.credential.certificate)
        broker.reload()
        time.sleep(0.3)
        log_start = len(broker.log_text())
        outcome = attempt(cart3)
        assert not outcome.connected, "revoked certificate accepted after a reload"
        assert broker.wait_for_log(VERIFY_FAILED, start=log_start), outcome.detail
        assert live.still_connected(), "a reload cuts live connections after all"

        broker.restart()
        assert not attempt(cart3).connected
        assert attempt(cart4).connected
        reader = Probe(broker, cart4, client_id=cart4.identity).connected()
        probes.append(reader)
        assert not reader.subscribe(topics.bundle_manifest(STORE)).is_failure
        assert reader.wait_for(manifest), "retained manifest lost across the restart"
    finally:
        for probe in probes:
            probe.close()
        broker.stop()


def test_stale_crl_locks_everyone_out_until_refreshed(tmp_path: Path) -> None:
    """A CRL past its nextUpdate makes OpenSSL refuse every client, the hub included.

    This is why :func:`pki.refresh_crl` exists and must run on a timer.
    """
    require_broker()
    store_pki = StorePki.create(tmp_path / "pki")
    hub_files = store_pki.hub()
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    pki.write_crl(store_pki.crl, pki.build_crl(store_pki.ca, valid_days=30, now=past))
    broker = TlsBroker(store_pki, tmp_path / "broker")
    broker.start()
    try:
        probe = Probe(broker, hub_files, client_id=HUB)
        outcome = probe.connect()
        probe.close()
        assert not outcome.connected, "a stale CRL was accepted"
        assert broker.wait_for_log(VERIFY_FAILED), outcome.detail

        pki.refresh_crl(store_pki.ca, store_pki.crl)
        broker.restart()
        probe = Probe(broker, hub_files, client_id=HUB)
        assert probe.connect().connected
        probe.close()
    finally:
        broker.stop()


# -- provisioning helpers (no broker) ------------------------------------------------------


def test_shipped_acl_is_the_rendered_one() -> None:
    """packaging/mosquitto/acl is render_acl("s001"): the example cannot drift from the code."""
    assert SHIPPED_ACL.read_text(encoding="utf-8") == pki.render_acl(STORE)


def test_acl_uses_the_certificate_identity_and_a_literal_store() -> None:
    """Every cart rule is a %u pattern bound to its store; %c appears nowhere."""
    acl = pki.render_acl("s042")
    rules = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert not any("%c" in line for line in rules)
    patterns = [line for line in rules if line.startswith("pattern ")]
    assert patterns and all(line.split()[2].startswith("cartos/v1/s042/") for line in patterns)
    assert all("%u" in line for line in patterns if "/bundles/" not in line)
    assert "user hub-s042" in rules


@pytest.mark.parametrize(
    ("store_id", "number"),
    [("s/1", 1), ("s+", 1), ("#", 1), ("s 1", 1), ("", 1), ("s001", 0), ("s001", 10**8)],
)
def test_identities_that_the_acl_could_not_enforce_are_never_issued(
    store_id: str, number: int
) -> None:
    """Mosquitto denies all pattern access to names with + # /; such ids are refused early."""
    with pytest.raises(IdentityError):
        pki.cart_identity(store_id, number)


def test_identity_round_trip() -> None:
    """The hub recovers store and number from the CN it sees as the topic's cart segment."""
    assert CART_A == "cart-s001-0001"
    assert pki.parse_identity(CART_A) == pki.Identity("cart", STORE, 1, CART_A)
    assert pki.parse_identity(HUB) == pki.Identity("hub", STORE, None, HUB)
    assert pki.parse_identity("cart-st-7-0012").store == "st-7"
    with pytest.raises(IdentityError):
        pki.parse_identity("bundles")
    with pytest.raises(IdentityError):
        pki.parse_identity("printer-7")


def test_keys_are_written_0600_and_certificates_0644(tmp_path: Path) -> None:
    """Private keys are never readable by others, not even while being written."""
    ca = pki.create_store_ca(STORE)
    cart = pki.issue_cart_certificate(ca, 9, valid_days=30)
    cart.write(tmp_path / "c.crt", tmp_path / "c.key")
    ca.write(tmp_path / "ca.crt", tmp_path / "ca.key", passphrase=b"correct horse")
    for key in ("c.key", "ca.key"):
        assert stat.S_IMODE((tmp_path / key).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "c.crt").stat().st_mode) == 0o644
    assert b"ENCRYPTED" in (tmp_path / "ca.key").read_bytes()
    loaded = pki.load_certificate_authority(
        tmp_path / "ca.crt", tmp_path / "ca.key", passphrase=b"correct horse"
    )
    assert loaded.store == STORE
    assert pki.load_credential(tmp_path / "c.crt", tmp_path / "c.key").identity == "cart-s001-0009"
    with pytest.raises(PkiError):
        pki.load_credential(tmp_path / "c.crt", tmp_path / "ca.key", passphrase=b"correct horse")


def test_cart_certificate_is_a_client_certificate_of_its_store() -> None:
    """CN = identity, clientAuth only, not a CA, signed by the store CA, validity as asked."""
    ca = pki.create_store_ca(STORE)
    cart = pki.issue_cart_certificate(ca, 5, valid_days=90)
    cert = cart.certificate
    cert.verify_directly_issued_by(ca.certificate)
    assert cart.identity == "cart-s001-0005"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == dt.timedelta(days=90) + pki.BACKDATE


def test_revocation_accumulates_and_refuses_foreign_material(tmp_path: Path) -> None:
    """Each revoke keeps earlier entries, bumps the CRL number, and rejects other CAs' items."""
    ca, other = pki.create_store_ca(STORE), pki.create_store_ca(STORE)
    one, two = pki.issue_cart_certificate(ca, 1), pki.issue_cart_certificate(ca, 2)
    crl_path = tmp_path / "ca.crl"
    pki.revoke(ca, crl_path, one.certificate)
    pki.revoke(ca, crl_path, one.certificate)  # idempotent
    crl = pki.revoke(ca, crl_path, two.certificate)
    assert sorted(e.serial_number for e in crl) == sorted(
        [one.certificate.serial_number, two.certificate.serial_number]
    )
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3
    foreign = pki.issue_cart_certificate(other, 1).certificate  # same CA name, other key
    with pytest.raises(CertificateRevocationError, match="not signed"):
        pki.revoke(ca, crl_path, foreign)
    with pytest.raises(CertificateRevocationError, match="not issued"):
        pki.revoke(other, crl_path, foreign)  # the CRL on disk is not ``other``'s
    refreshed = pki.refresh_crl(ca, crl_path)
    assert len(list(refreshed)) == 2


# -- the transport is not what makes a bundle trustworthy --------------------------------


def test_rogue_publisher_behind_a_wrong_acl_is_still_rejected_by_signature_checks(
    tmp_path: Path,
) -> None:
    """A broker misconfigured to let carts write bundles does not get a forged bundle installed.

    Cart B (a valid certificate: a stolen or compromised cart) publishes on the
    store's bundle topics of a broker whose ACL was deliberately widened. Cart A
    receives everything over TLS, exactly as it would a genuine bundle, and its
    bundle store still refuses each forgery, while the hub's genuine bundle is
    applied. The wire wrapping of envelopes and chunks (``payloads``) is left out:
    what matters is that the bytes reaching the verifier are the attacker's.
    """
    require_broker()
    now = int(time.time())
    day = 86_400
    root = generate_private_key()
    hub_key = issue_signing_key(root, "hub-key-1", not_before=now - day, not_after=now + day)
    applied: list[int] = []

    def apply(manifest: Manifest, _parts: Any, _conn: Any) -> None:
        applied.append(manifest.version)

    def restore(_current: Any, _manifest: Any, _parts: Any, _conn: Any) -> None:
        raise AssertionError("nothing to roll back")

    bundles = BundleStore(
        tmp_path / "bundles.db",
        root_key=public_key_hex(root),
        store_id=STORE,
        apply=apply,
        restore=restore,
        certificates=[hub_key.certificate_envelope],
        clock=lambda: now,
    )

    def bundle(data: bytes, key_id: str = hub_key.key_id) -> tuple[Manifest, bytes]:
        manifest = build_manifest(
            bundle_type="catalogue",
            store=STORE,
            version=1,
            issued_at=now - 60,
            expires_at=now + day,
            key_id=key_id,
            parts={"rows": ("catalogue_rows", data)},
        )
        return manifest, data

    genuine, genuine_rows = bundle(b'{"sku":"A1"}\n')
    evil_rows = b'{"sku":"A1","price":0}\n'
    forged_same_id, _ = bundle(evil_rows)
    rogue_key = issue_signing_key(
        generate_private_key(), "rogue-1", not_before=now - day, not_after=now + day
    )
    forged_own_key, _ = bundle(evil_rows, key_id=rogue_key.key_id)
    attacks = {
        # Signed with a key the root never certified, claiming the hub key's id.
        "bad_signature": (sign_manifest(forged_same_id, generate_private_key()), evil_rows),
        # Signed by a key certified by the attacker's own root.
        "unknown_key": (rogue_key.sign(forged_own_key), evil_rows),
        # The genuine signed manifest, replayed with other part bytes of the same size.
        "tampered_part": (hub_key.sign(genuine), b'{"sku":"Z9"}\n'),
    }

    store_pki = StorePki.create(tmp_path / "pki")
    wrong_acl = pki.render_acl(STORE) + f"pattern readwrite {ROOT}/{STORE}/bundles/#\n"
    broker = TlsBroker(store_pki, tmp_path / "broker", acl_text=wrong_acl)
    broker.start()
    probes: list[Probe] = []
    manifest_topic = topics.bundle_manifest(STORE)
    chunk_topic = topics.bundle_chunk(STORE, "1", "rows", 0)
    ref = part_ref(STORE, "catalogue", 1, "rows")
    try:
        hub = Probe(broker, store_pki.hub(), client_id=HUB).connected()
        rogue = Probe(broker, store_pki.cart(2), client_id=CART_B).connected()
        cart = Probe(broker, store_pki.cart(1), client_id=CART_A).connected()
        probes += [hub, rogue, cart]
        assert not cart.subscribe(topics.bundle_parts_filter(STORE)).is_failure
        assert not cart.subscribe(manifest_topic).is_failure

        def deliver(sender: Probe, envelope: bytes, rows: bytes) -> dict[str, bytes]:
            """Publish a manifest and its chunk; return what reached the cart, by topic."""
            start = len(cart.messages)
            assert not sender.publish(manifest_topic, envelope).is_failure
            assert not sender.publish(chunk_topic, rows).is_failure
            with cart._cond:
                arrived = cart._cond.wait_for(lambda: len(cart.messages) >= start + 2, TIMEOUT)
                assert arrived, "the widened ACL did not let it through"
                return dict(cart.messages[start : start + 2])

        for reason, (envelope, rows) in attacks.items():
            got = deliver(rogue, envelope, rows)
            outcome = bundles.offer(got[manifest_topic], {ref: got[chunk_topic]})
            assert (outcome.status, outcome.reason) == ("rejected", reason), outcome
        assert applied == [] and bundles.high_water("catalogue") == 0

        got = deliver(hub, hub_key.sign(genuine), genuine_rows)
        assert bundles.offer(got[manifest_topic], {ref: got[chunk_topic]}).accepted
        assert applied == [1]
    finally:
        for probe in probes:
            probe.close()
        broker.stop()
        bundles.close()
