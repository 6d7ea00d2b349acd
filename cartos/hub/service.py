"""The hub's receiving loop: uplink messages in, one durable commit per batch, acks out.

Messages arrive on the MQTT client's thread and are only queued there; one
worker takes whatever has arrived (up to ``batch`` messages or ``linger_s``),
commits it in one transaction, and only then publishes, per cart stream, the
high-water the commit reached. Batching is what lets a hub on a store PC keep
up with hundreds of carts on one fsync per batch instead of one per message.
Anything undecodable is logged, counted by reason and dropped: a hostile
payload never stops the hub (``cartos.sync.payloads``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cartos.errors import CartosError
from cartos.hub.canary import Activity, CanaryPolicy, evaluate
from cartos.hub.message_store import MessageStore, open_message_store
from cartos.hub.release import Release, Releaser
from cartos.hub.store import Received
from cartos.sync import payloads, topics
from cartos.sync.topics import Kind

log = logging.getLogger(__name__)

Consumer = Callable[[MessageStore, set[tuple[str, str]]], bool]
"""Something that reads committed uplink messages (review items, telemetry) after each
commit; see :meth:`Hub.add_consumer`."""


@dataclass(frozen=True)
class HubSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    batch: int = 500
    linger_s: float = 0.02
    """How long the worker waits for more messages before committing a partial batch."""
    keepalive_s: int = 5
    tls: dict[str, str] | None = None
    release_interval_s: float = 0.5
    """Least time between two catalogue releases: corrections arriving together from many
    carts become one release instead of one each."""
    canary: CanaryPolicy | None = None
    """Release to a few carts first (``cartos.hub.canary``); none: straight to every cart."""
    rollback_resend_s: float = 30.0
    """How often a canary cart still holding a halted release is told again to roll back."""


class Hub:
    """Receives every cart's uplink for ``store`` into ``db``; acknowledges after commit."""

    def __init__(self, db: Path | str, store: str, hub_id: str,
                 settings: HubSettings | None = None,
                 releaser: Releaser | None = None) -> None:
        """``releaser``: the master catalogue and signing key; without one the hub only
        receives (no learning, no releases)."""
        self.store = topics.validate_segment(store, "store")
        self.hub_id = hub_id
        self.settings = settings or HubSettings()
        self.db = open_message_store(db)
        self.releaser = releaser
        self.releases: list[Release] = []
        self._dirty = False
        self._started = releaser is None
        self.states: dict[str, dict[str, Any]] = {}
        """Each cart's latest retained state (``…/<cart>/state``)."""
        self.responses: dict[str, dict[str, Any]] = {}
        """Command responses by transaction."""
        self.activity = Activity()
        self.verdicts: list[tuple[str, str]] = []
        self._told: dict[str, float] = {}
        self._released_at = 0.0
        self._consumers: list[Consumer] = (
            [releaser.catalogue.consume] if releaser is not None else [])
        self._touched: set[tuple[str, str]] = {(c, "*") for c in self.db.carts()}
        self._release_requested = threading.Event()
        self.rejections = payloads.RejectionCounter()
        self.committed = 0
        self.duplicates = 0
        self._inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # A persistent session: while the hub restarts, the broker queues what carts send it
        # (carts also resend what stays unacknowledged, for a broker that lost the queue).
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=hub_id,
                                   protocol=mqtt.MQTTv311, clean_session=False)
        if self.settings.tls is not None:
            t = self.settings.tls
            self._client.tls_set(ca_certs=t["ca_certs"], certfile=t["certfile"],
                                 keyfile=t["keyfile"])
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode,
                    _p: Properties | None) -> None:
        if reason.is_failure:
            log.warning("broker refused the hub: %s", reason)
            return
        for sub in topics.hub_subscriptions(self.store):
            client.subscribe(sub.filter, qos=sub.qos)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._inbox.put((message.topic, bytes(message.payload)))

    def start(self) -> Hub:
        self._client.connect_async(self.settings.host, self.settings.port,
                                   keepalive=self.settings.keepalive_s)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="cartos-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._client.disconnect()
        self._client.loop_stop()
        self.db.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._take()
            if batch:
                try:
                    self._commit(batch)
                except CartosError as exc:  # nothing acked: the carts resend after reconnecting
                    log.error("hub: %s", exc)
            try:
                self._learn_and_release()
            except CartosError as exc:  # learning resumes from its cursor next pass
                log.error("hub catalogue: %s", exc)

    def add_consumer(self, consumer: Consumer) -> None:
        """Call ``consumer(db, touched)`` on the worker thread after commits, with the
        ``(cart, stream)`` pairs committed since its last call (``(cart, "*")`` for every cart
        with messages, once at start). A consumer keeps its own cursor in its own storage and
        returns True when it changed the master catalogue (a release follows)."""
        self._consumers.append(consumer)

    def request_release(self) -> None:
        """Cut a release soon (thread-safe): e.g. an attendant labelled a review crop."""
        self._release_requested.set()

    def _learn_and_release(self) -> None:
        """Run the consumers (the master catalogue's learner first), then cut a release
        when something changed."""
        touched, self._touched = self._touched, set()
        for consumer in self._consumers:
            if touched and consumer(self.db, touched):
                self._dirty = True
        if self._release_requested.is_set():
            self._release_requested.clear()
            self._dirty = True
        releaser = self.releaser
        if releaser is None or not self._client.is_connected():
            return
        state = releaser.state()
        if not self._started:  # (re)announce what is out; release what changed while down
            self._started = True
            releaser.republish(self._client)
            self._dirty = releaser.needs_release()
        if state.canary is not None:
            self._watch_canary(releaser, state.canary)
            return  # one candidate at a time: what changed meanwhile waits for the verdict
        if state.halted is not None:
            self._roll_back_halted(state.halted)
            return
        if (self._dirty
                and time.monotonic() - self._released_at >= self.settings.release_interval_s):
            self._dirty = False
            self._released_at = time.monotonic()
            policy = self.settings.canary
            carts = policy.choose(set(self.states) | set(self.db.carts())) if policy else []
            try:
                self.releases.append(releaser.release(self._client, canary_carts=carts))
            except (OSError, RuntimeError, ValueError) as exc:
                self._dirty = True
                log.error("release not published: %s", exc)
            if carts:
                self.activity = Activity()

    def _watch_canary(self, releaser: Releaser, candidate: dict[str, Any]) -> None:
        policy = self.settings.canary or CanaryPolicy(carts=tuple(candidate["carts"]))
        verdict = evaluate(policy, candidate, self.states, self.activity, time.time())
        if verdict.action == "promote":
            releaser.promote(self._client)
            self.verdicts.append(("promote", verdict.reason))
        elif verdict.action == "halt":
            halted = releaser.halt(self._client, verdict.reason)
            self.verdicts.append(("halt", verdict.reason))
            self._roll_back_halted(halted)

    def _roll_back_halted(self, halted: dict[str, Any]) -> None:
        """Tell every canary cart that still holds the halted release to roll back."""
        version = int(halted["version"])
        now = time.monotonic()
        for cart in halted.get("carts", []):
            state = self.states.get(cart) or {}
            held = [int(b.get("version", 0)) for b in state.get("bundles") or []
                    if b.get("type") == "catalogue"]
            if not held or max(held) != version:
                continue
            if now - self._told.get(cart, -1e9) < self.settings.rollback_resend_s:
                continue
            self._told[cart] = now
            self.command(cart, "rollback", {"type": "catalogue"})

    def command(self, cart: str, command: str, args: dict[str, Any] | None = None,
                ttl_s: float = 300.0) -> str:
        """Send a command request to ``cart``; returns its transaction (the response lands
        in :attr:`responses`)."""
        transaction = uuid.uuid4().hex
        now = time.time()
        body: dict[str, Any] = {"transaction": transaction, "command": command,
                                "args": args or {}, "sent_at": now, "expires_at": now + ttl_s}
        self._client.publish(topics.command_request(self.store, cart),
                             payloads.encode("cmd_req", body), qos=1)
        return transaction

    def _take(self) -> list[tuple[str, bytes]]:
        try:
            first = self._inbox.get(timeout=0.1)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.settings.linger_s
        while len(batch) < self.settings.batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _commit(self, raw: list[tuple[str, bytes]]) -> None:
        received: list[Received] = []
        for topic, data in raw:
            try:
                parsed, msg = payloads.decode_message(topic, data, counter=self.rejections)
            except CartosError as exc:
                log.warning("dropped a message on %s: %s", topic[:120], exc)
                continue
            if parsed.kind == Kind.STATE and parsed.cart is not None:
                self.states[parsed.cart] = dict(msg)
                continue
            if parsed.kind == Kind.CMD_RES:
                self.responses[str(msg["transaction"])] = dict(msg)
                continue
            if parsed.kind != Kind.UPLINK:
                continue  # availability: shown by the broker's retained message
            received.append(Received(str(msg["id"]), str(msg["cart"]), str(msg["store"]),
                                     str(msg["stream"]), int(msg["seq"]), dict(msg["body"])))
        if not received:
            return
        marks, duplicates = self.db.commit(received)
        self._touched |= {(m.cart, m.stream) for m in received}
        for m in received:
            self.activity.count(m.cart, m.stream)
        self.committed += len(received) - duplicates
        self.duplicates += duplicates
        for (cart, stream), upto in marks.items():
            ack = payloads.encode("ack", {"stream": stream, "upto_seq": upto,
                                          "hub_id": self.hub_id, "sent_at": time.time()})
            self._client.publish(topics.ack(self.store, cart), ack, qos=1)
