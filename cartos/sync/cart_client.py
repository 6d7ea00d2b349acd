"""The cart's MQTT client: the outbox goes up (deleted on the hub's ack), signed bundles come down.

Delivery is at least once, the effect exactly once: every outbox row is
published (QoS 1) as an envelope whose ``id`` is the row's ``msg_id``, and a
row is deleted only when the hub says it has *committed* that stream up to
its seq (``…/<cart>/ack``, see ``docs/mqtt.md``). A broker's PUBACK is not
durability: a broker killed with -9 loses what it had acknowledged since its
last save. So nothing here trusts broker sessions: after every (re)connection
the cart starts again from its oldest unacknowledged row, and the hub, which
stores by id, acknowledges duplicates without storing them twice.

Down: the hub's retained bundle manifest arrives on every (re)connection. Each
offered bundle is checked first (signature, store, version: nothing is fetched
for a bundle the cart would refuse), then its retained chunks are fetched into
a staging folder that survives restarts, and the complete bundle is offered to
the cart's :class:`~cartos.sync.bundles.store.BundleStore`, which verifies and
applies it in one transaction. The manifest is the reconciliation: whatever the
broker lost or the cart missed while offline, the newest bundle is named there.

One thread owns everything: it has its own connection to the basket file
(WAL lets it read and delete while the runtime writes), and the MQTT client's
callbacks only queue what happened for it. A basket write never waits for the
network.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cartos.basket.schema import STREAMS
from cartos.basket.store import BasketStore
from cartos.errors import CartosError
from cartos.sync import payloads, topics
from cartos.sync.bundles.manifest import Chunk
from cartos.sync.bundles.store import BundleStore, ChunkAssembler, Outcome
from cartos.sync.errors import BundleRejected
from cartos.sync.topics import Kind

log = logging.getLogger(__name__)

UPLINK_STREAMS: tuple[str, ...] = ("corrections", "review", "events", "telemetry")
"""Drain order: what the hub learns from first, telemetry last."""


@dataclass(frozen=True)
class SyncSettings:
    """How the cart talks to the broker.

    ``window``: unacknowledged messages in flight per stream. The hub commits in
    batches, so a window of a few hundred keeps the pipe full without holding
    more than a moment's worth of resends after a reconnection.
    ``poll_s``: how often the outbox is looked at for new rows when idle.
    ``keepalive_s``: MQTT keepalive; the broker publishes the last will
    ("offline") after 1.5 × this without a packet.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    window: int = 200
    poll_s: float = 0.05
    keepalive_s: int = 5
    resend_after_s: float = 5.0
    """Resend everything unacknowledged when no ack has come for this long while rows wait:
    the hub may have been away (its messages dropped by the broker) while the cart's own
    connection never broke, so a reconnection alone would never trigger the resend."""
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 5.0
    tls: dict[str, str] | None = None
    """``{"ca_certs", "certfile", "keyfile"}`` for the TLS listener with client certificates."""


@dataclass
class SyncStats:
    published: int = 0
    acked_rows: int = 0
    connects: int = 0
    disconnects: int = 0
    rejected_acks: int = 0
    last_connect_s: float | None = None
    reconnect_s: list[float] = field(default_factory=list)
    """Seconds from each lost connection to the next successful one."""


class CartSync:
    """Publishes the outbox of ``basket_db`` for ``store``/``cart``; thread-safe start/stop."""

    def __init__(self, basket_db: Path, store: str, cart: str,
                 settings: SyncSettings | None = None,
                 clock: Callable[[], float] = time.time,
                 bundles: Callable[[], BundleStore] | None = None,
                 staging: Path | None = None,
                 on_outcome: Callable[[Outcome], None] | None = None) -> None:
        """``bundles`` opens the cart's bundle store (on the worker thread, which owns it);
        ``staging`` is where chunks are kept until a bundle is complete; ``on_outcome`` is
        told what became of every complete bundle (on the worker thread), e.g. so the
        runtime reloads its recogniser after an applied one."""
        self._on_outcome = on_outcome
        self.basket_db = basket_db
        self.store = topics.validate_segment(store, "store")
        self.cart = topics.validate_cart(cart)
        self.settings = settings or SyncSettings()
        self.stats = SyncStats()
        self._clock = clock
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = self._make_client()
        self._connected = False
        self._next_seq: dict[str, int] = {}
        self._lost_at: float | None = None
        self._last_progress = time.monotonic()
        self._open_bundles = bundles
        self._staging = staging or basket_db.with_name(basket_db.stem + "-bundles")
        self._downloads: dict[str, tuple[bytes, ChunkAssembler]] = {}
        self.outcomes: list[Outcome] = []
        self._bundles: BundleStore | None = None
        self._held: list[dict[str, Any]] = []
        """What became of every complete bundle offered to the store, newest last."""

    # -- MQTT client (callbacks only queue) ------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.cart,
                             protocol=mqtt.MQTTv311, clean_session=True)
        s = self.settings
        if s.tls is not None:
            client.tls_set(ca_certs=s.tls["ca_certs"], certfile=s.tls["certfile"],
                           keyfile=s.tls["keyfile"])
        client.will_set(topics.available(self.store, self.cart),
                        self._available("offline"),
                        qos=1, retain=True)
        client.reconnect_delay_set(min_delay=max(1, int(s.reconnect_min_s)),
                                   max_delay=max(1, int(s.reconnect_max_s)))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _available(self, status: str) -> bytes:
        return payloads.encode("available", {"cart": self.cart, "store": self.store,
                                             "status": status, "sent_at": self._clock()})

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode,
                    _p: Properties | None) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        for sub in topics.cart_subscriptions(self.store, self.cart):
            client.subscribe(sub.filter, qos=sub.qos)
        self._events.put(("connected", None))

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode,
                       _p: Properties | None) -> None:
        self._events.put(("disconnected", str(reason)))

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._events.put(("message", (message.topic, bytes(message.payload))))

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> CartSync:
        self._client.connect_async(self.settings.host, self.settings.port,
                                   keepalive=self.settings.keepalive_s)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="cartos-uplink", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Say "stopped" (retained), disconnect cleanly; pending rows stay in the outbox."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._connected:
            info = self._client.publish(
                topics.available(self.store, self.cart),
                self._available("stopped"),
                qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # the link went meanwhile
                info.wait_for_publish(timeout=1.0)
        self._client.disconnect()
        self._client.loop_stop()

    # -- the worker -----------------------------------------------------------------------------

    def _run(self) -> None:
        self._bundles = self._open_bundles() if self._open_bundles is not None else None
        if self._bundles is not None:
            self._held = [dict(h) for h in self._bundles.holding()]
        try:
            with BasketStore(self.basket_db) as basket:
                while not self._stop.is_set():
                    try:
                        kind, data = self._events.get(timeout=self.settings.poll_s)
                    except queue.Empty:
                        kind, data = "poll", None
                    try:
                        self._handle(basket, kind, data)
                    except CartosError as exc:  # a refused ack or a full disk never kills it
                        log.error("sync: %s", exc)
        finally:
            if self._bundles is not None:
                self._bundles.close()

    def _handle(self, basket: BasketStore, kind: str, data: Any) -> None:
        if kind == "connected":
            self._connected = True
            self.stats.connects += 1
            now = time.monotonic()
            if self._lost_at is not None:
                self.stats.reconnect_s.append(now - self._lost_at)
                self._lost_at = None
            self._next_seq = {}  # start again from the oldest unacknowledged row
            self._last_progress = now
            for ref in self._downloads:  # a clean session forgot the chunk subscriptions
                self._client.subscribe(topics.bundle_parts_filter(self.store, ref), qos=1)
            self._client.publish(
                topics.available(self.store, self.cart),
                self._available("online"),
                qos=1, retain=True)
        elif kind == "disconnected":
            if self._connected:
                self.stats.disconnects += 1
                self._lost_at = time.monotonic()
            self._connected = False
        elif kind == "message":
            self._on_message_data(basket, *data)
        if self._connected:
            self._publish_pending(basket)

    def _on_message_data(self, basket: BasketStore, topic: str, raw: bytes) -> None:
        try:
            parsed, message = payloads.decode_message(topic, raw)
        except CartosError as exc:
            if topic == topics.ack(self.store, self.cart):
                self.stats.rejected_acks += 1
            log.warning("message on %s refused: %s", topic[:120], exc)
            return
        if parsed.kind == Kind.ACK:
            self._on_ack(basket, message)
        elif parsed.kind == Kind.BUNDLE_MANIFEST:
            self._on_manifest(message)
        elif parsed.kind == Kind.BUNDLE_CHUNK and parsed.bundle is not None:
            self._on_chunk(parsed.bundle, message)

    # -- bundles down ----------------------------------------------------------------------------

    def _on_manifest(self, message: dict[str, Any]) -> None:
        store = self._bundles
        if store is None:
            return
        for envelope in message.get("certificates", []):
            try:
                store.install_certificate(str(envelope).encode())
            except BundleRejected as exc:
                log.warning("signing-key certificate refused: %s", exc)
        if "revocations" in message:
            try:
                store.install_revocations(str(message["revocations"]).encode())
            except BundleRejected as exc:
                log.warning("revocation list refused: %s", exc)
        for text in message.get("bundles", []):
            envelope = str(text).encode()
            try:
                verified = store.check(envelope)
            except BundleRejected as exc:
                if exc.reason not in ("older_version", "replay"):
                    log.warning("bundle refused before download: %s", exc)
                continue
            manifest = verified.manifest
            ref = topics.bundle_ref(manifest.type, manifest.version)
            if ref in self._downloads:
                continue
            assembler = ChunkAssembler(self._staging / ref, manifest)
            self._downloads[ref] = (envelope, assembler)
            if assembler.complete:  # every chunk was staged before a restart
                self._finish(ref)
            else:
                self._client.subscribe(topics.bundle_parts_filter(self.store, ref), qos=1)

    def _on_chunk(self, ref: str, message: dict[str, Any]) -> None:
        download = self._downloads.get(ref)
        if download is None or self._bundles is None:
            return
        try:
            done = download[1].add(Chunk.from_mapping(payloads.chunk_fields(message)))
        except BundleRejected as exc:
            log.warning("chunk of %s refused: %s", ref, exc)
            return
        if done and download[1].complete:
            self._finish(ref)

    def _finish(self, ref: str) -> None:
        envelope, assembler = self._downloads.pop(ref)
        self._client.unsubscribe(topics.bundle_parts_filter(self.store, ref))
        assert self._bundles is not None
        outcome = self._bundles.offer(envelope, assembler.parts())
        assembler.discard()
        self.outcomes.append(outcome)
        self._held = [dict(h) for h in self._bundles.holding()]
        log.info("bundle %s: %s %s %s", ref, outcome.status, outcome.reason or "",
                 outcome.detail)
        if self._on_outcome is not None:
            try:
                self._on_outcome(outcome)
            except Exception:  # a listener's bug must not stop the downlink
                log.exception("bundle outcome listener failed")

    def holding(self) -> list[dict[str, Any]]:
        """The bundles the cart runs (``BundleStore.holding``, refreshed by the worker thread,
        which alone may touch the store)."""
        return list(self._held)

    # -- acks ------------------------------------------------------------------------------------

    def _on_ack(self, basket: BasketStore, ack: dict[str, Any]) -> None:
        stream, upto = str(ack["stream"]), int(ack["upto_seq"])
        if stream not in STREAMS:
            self.stats.rejected_acks += 1
            return
        try:
            deleted = basket.ack(stream, upto)
        except CartosError as exc:  # an ack beyond what was written: a hub bug, never applied
            self.stats.rejected_acks += 1
            log.error("ack %s up to %d not applied: %s", stream, upto, exc)
            return
        self.stats.acked_rows += deleted
        if deleted:
            self._last_progress = time.monotonic()

    def _publish_pending(self, basket: BasketStore) -> None:
        window = self.settings.window
        if self._next_seq and time.monotonic() - self._last_progress > self.settings.resend_after_s:
            log.info("no ack for %.0f s: resending from the oldest unacknowledged row",
                     self.settings.resend_after_s)
            self._next_seq = {}
            self._last_progress = time.monotonic()
        for stream in UPLINK_STREAMS:
            rows = basket.pending(stream, limit=window)
            if not rows:
                continue
            start = self._next_seq.get(stream, 0)
            for row in rows:
                if row.seq < start:
                    continue
                envelope = payloads.uplink_envelope(self.store, self.cart, row,
                                                    sent_at=self._clock())
                info = self._client.publish(topics.uplink(self.store, self.cart, stream),
                                            payloads.encode("uplink", envelope), qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    return  # not connected after all: resend from here next time
                self.stats.published += 1
                self._next_seq[stream] = row.seq + 1

    @property
    def connected(self) -> bool:
        return self._connected
