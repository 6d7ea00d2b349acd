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
get PUBACK reason 0x87 (not authorised), a forbidden SUBSCRIBE gets SUBACK 0x80
(3.1.1) or 0x87 (5), and the broker log names the client it denied, which shows
the identity it used was the certificate's.
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
from paho.mqtt.reasoncodes import ReasonCode

from cartos.sync import pki, topics
from cartos.sync.errors import CertificateRevocationError, IdentityError, PkiError
from tests.sync.tls_broker import (
    EXAMPLE_STORE,
    SHIPPED_ACL,
    ClientFiles,
    StorePki,
    TlsBroker,
    mosquitto_binary,
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

needs_broker = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto not installed")


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
        protocol: int = mqtt.MQTTv5,
        username: str | None = None,
        tls: bool = True,
    ) -> None:
        self.broker = broker
        self.protocol = protocol
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol
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
        assert result == mqtt.MQTT_ERR_SUCCESS, result
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
    if mosquitto_binary() is None:
        pytest.skip("mosquitto not installed")
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

PROTOCOLS = [pytest.param(mqtt.MQTTv311, id="MQTT3.1.1"), pytest.param(mqtt.MQTTv5, id="MQTT5")]


def open_actor(store: Store, hub: Probe, name: str, protocol: int) -> Probe:
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
    """``actor`` publishes on ``topic``; the broker must deliver it iff ``allowed``."""

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
    Pub("cart A with cart B's client id", topics.uplink(STORE, CART_B, "events"), False, "%c"),
    Pub("cart A with cart B's client id", topics.available(STORE, CART_B), False, "%c"),
    Pub("cart A with cart B's client id", topics.command_response(STORE, CART_B), False, "%c"),
    # So is the MQTT username: the certificate's CN replaces it.
    Pub("cart A with the hub's username", topics.bundle_manifest(STORE), False, "CN wins"),
    Pub("cart A with the hub's username", topics.ack(STORE, CART_B), False, "CN wins"),
    # The hub writes downlink and bundles, never a cart's uplink.
    Pub("hub", topics.ack(STORE, CART_A), True, "acks"),
    Pub("hub", topics.command_request(STORE, CART_A), True, "commands"),
    Pub("hub", topics.bundle_manifest(STORE), True, "bundle manifest"),
    Pub("hub", BUNDLE_CHUNK, True, "bundle chunks"),
    Pub("hub", topics.uplink(STORE, CART_A, "events"), False, "forging a cart's uplink"),
]


@needs_broker
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("rule", PUBLISH_MATRIX, ids=lambda r: r.id)
def test_publish_matrix(store: Store, hub: Probe, rule: Pub, protocol: int) -> None:
    """One row of the write side of the ACL, proven by delivery to (or absence at) the hub."""
    actor = open_actor(store, hub, rule.actor, protocol)
    # The hub observer is MQTT 5; its own protocol governs its PUBACKs.
    actor_protocol = mqtt.MQTTv5 if actor is hub else protocol
    log_start = len(store.broker.log_text())
    payload = unique("probe")
    try:
        puback = actor.publish(rule.topic, payload)
        observable = rule.topic.startswith(f"{ROOT}/{STORE}/")
        fence(hub, hub, topics.ack(STORE, CART_A))
        denied_line = f"Denied PUBLISH from {ACTORS[rule.actor].identity}"
        if rule.allowed:
            assert not puback.is_failure, puback
            assert hub.got(payload), f"{rule.why}: not delivered to the hub"
            assert denied_line not in store.broker.log_text()[log_start:]
        else:
            assert not hub.got(payload), f"{rule.why}: the hub received it"
            assert observable or rule.topic.startswith(f"{ROOT}/{OTHER_STORE}/")
            if actor_protocol == mqtt.MQTTv5:
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
    """``actor`` subscribes to ``filter``; ``feeder`` then publishes on ``probe_topic``."""

    actor: str
    filter: str
    allowed: bool
    feeder: str
    probe_topic: str = ""

    @property
    def topic(self) -> str:
        return self.probe_topic or self.filter

    @property
    def id(self) -> str:
        verdict = "allowed" if self.allowed else "DENIED"
        return f"{self.actor} reads {self.filter}: {verdict}"


SUBSCRIBE_MATRIX = [
    # A cart reads its own downlink and the store's bundles ...
    Sub("cart A", topics.ack(STORE, CART_A), True, "hub"),
    Sub("cart A", topics.command_request(STORE, CART_A), True, "hub"),
    Sub("cart A", topics.bundle_manifest(STORE), True, "hub"),
    Sub("cart A", topics.bundle_parts_filter(STORE), True, "hub", BUNDLE_CHUNK),
    # ... and nothing of another cart, nor wildcards that would cover other carts.
    Sub("cart A", topics.ack(STORE, CART_B), False, "hub"),
    Sub("cart A", topics.command_request(STORE, CART_B), False, "hub"),
    Sub("cart A", topics.uplink(STORE, CART_B, "events"), False, "cart B"),
    Sub("cart A", topics.state(STORE, CART_B), False, "cart B"),
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


@needs_broker
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("rule", SUBSCRIBE_MATRIX, ids=lambda r: r.id)
def test_subscribe_matrix(store: Store, hub: Probe, rule: Sub, protocol: int) -> None:
    """One row of the read side: SUBACK code, then delivery (or not) of a real message."""
    actor = open_actor(store, hub, rule.actor, protocol)
    own_ack = topics.ack(STORE, ACTORS[rule.actor].identity)
    feeder: Probe | None = None
    try:
        assert not actor.subscribe(own_ack).is_failure  # the fence's channel
        suback = actor.subscribe(rule.filter)
        if rule.feeder == "hub":
            source = hub
        elif rule.feeder == rule.actor:
            source = actor
        else:
            feeder = open_actor(store, hub, rule.feeder, mqtt.MQTTv5)
            source = feeder
        payload = unique("probe")
        assert not source.publish(rule.topic, payload).is_failure, "feeder may write here"
        fence(hub, actor, own_ack)
        if rule.allowed:
            assert not suback.is_failure, suback
            assert actor.got(payload), "not delivered"
        else:
            expected = NOT_AUTHORIZED if protocol == mqtt.MQTTv5 else SUBACK_FAILURE_V311
            assert suback.value == expected, suback
            assert not actor.got(payload), "delivered despite the ACL"
    finally:
        if feeder is not None:
            feeder.close()
        actor.close()


# -- identity is the certificate ---------------------------------------------------------


@needs_broker
def test_spoofed_client_id_cannot_take_over_another_carts_session(
    store: Store, hub: Probe
) -> None:
    """Cart A claiming cart B's client id neither disconnects B nor receives B's messages.

    ``use_username_as_clientid`` replaces the claimed id by the certificate CN,
    so the broker sees two different clients; without it, the second CONNECT
    would take over B's (persistent) session.
    """
    cart_b = Probe(store.broker, store.files["cart B"], client_id=CART_B).connected()
    spoofer = Probe(store.broker, store.files["cart A"], client_id=CART_B).connected()
    try:
        assert not cart_b.subscribe(topics.ack(STORE, CART_B)).is_failure
        assert spoofer.subscribe(topics.ack(STORE, CART_B)).is_failure
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


# -- who may connect at all ---------------------------------------------------------------


@dataclass(frozen=True)
class Conn:
    """A client that must be refused before MQTT starts, and the TLS alert expected."""

    name: str
    alert: tuple[str, ...]
    """Any of these substrings in the failure (OpenSSL's alert names vary by TLS version)."""


CONNECT_MATRIX = [
    Conn("no client certificate", ("CERTIFICATE_REQUIRED", "HANDSHAKE_FAILURE")),
    Conn("no certificate, hub's username and a password", ("CERTIFICATE_REQUIRED", "HANDSHAKE")),
    Conn("plain MQTT, no TLS", ()),
    Conn("cart certificate of another store's CA", ("UNKNOWN_CA",)),
    Conn("hub certificate of an impostor CA with the same name", ("DECRYPT_ERROR", "UNKNOWN_CA")),
    Conn("expired cart certificate", ("CERTIFICATE_EXPIRED",)),
    Conn("broker's server certificate used as a client", ("UNSUPPORTED_CERTIFICATE",)),
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


@needs_broker
@pytest.mark.parametrize("case", CONNECT_MATRIX, ids=lambda c: f"{c.name}: REFUSED")
def test_connect_refused(store: Store, case: Conn, tmp_path: Path) -> None:
    """Clients without a valid certificate of this store's CA never reach MQTT."""
    probe = refused_client(store, case.name, tmp_path)
    try:
        outcome = probe.connect()
    finally:
        probe.close()
    assert not outcome.connected, f"{case.name} was let in"
    assert probe.connack is None, f"refused after MQTT started: {outcome.detail}"
    if case.alert:
        assert any(a in outcome.detail.upper() for a in case.alert), outcome.detail


# -- revocation ----------------------------------------------------------------------------


@needs_broker
def test_revoked_certificate_is_refused_after_the_broker_reloads_the_crl(
    tmp_path: Path,
) -> None:
    """Revoking cart 3 locks it out for new connections once the broker reads the CRL.

    Also pins what operators must know: a connection that is already up
    survives a reload, so revocation is completed by a restart, after which the
    cart's reconnect is refused while everyone else (and retained bundles) is fine.
    """
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
            store_pki.ca, store_pki.crl, cart3.credential.certificate,
            reason=x509.ReasonFlags.key_compromise,
        )
        assert pki.is_revoked(crl, cart3.credential.certificate)
        broker.reload()
        time.sleep(0.3)
        outcome = attempt(cart3)
        assert not outcome.connected and "REVOKED" in outcome.detail.upper(), outcome.detail
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


@needs_broker
def test_stale_crl_locks_everyone_out_until_refreshed(tmp_path: Path) -> None:
    """A CRL past its nextUpdate makes OpenSSL refuse every client, the hub included.

    This is why :func:`pki.refresh_crl` exists and must run on a timer.
    """
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
        assert not outcome.connected
        assert "EXPIRED" in outcome.detail.upper(), outcome.detail

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
