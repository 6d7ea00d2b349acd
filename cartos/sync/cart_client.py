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
broker lost or the cart missed while offline, the newest bundle is named there. A
manifest may also name canary bundles for a list of carts; a listed cart treats them
as offered too. Of the stable bundles of one type only the newest is fetched; a canary
cart behind stable installs stable first and the candidate right after, so that rolling
the candidate back lands on stable.

State: a retained summary (bundles held, outbox counters, the latest bundle
outcome) on ``…/<cart>/state`` after every (re)connection, every complete bundle
outcome and every ``state_interval_s``, so the hub sees what each cart runs without
asking. Commands: requests on ``…/<cart>/cmd/req`` are answered on ``…/cmd/res``
with their ``transaction``; an expired request is not run, and a redelivered
transaction is answered again from memory, not run twice.

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
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cartos.basket.schema import STREAMS
from cartos.basket.store import BasketStore
from cartos.errors import CartosError
from cartos.sync import payloads, topics
from cartos.sync.bundles.manifest import Chunk, Manifest
from cartos.sync.bundles.store import BundleStore, ChunkAssembler, Outcome
from cartos.sync.errors import BundleRejected, BundleStoreError, TopicError
from cartos.sync.topics import Kind

log = logging.getLogger(__name__)

UPLINK_STREAMS: tuple[str, ...] = ("corrections", "review", "events", "telemetry")
"""Drain order: what the hub learns from first, telemetry last."""

COMMAND_MEMORY: Final = 256
"""Transactions whose responses the cart remembers, to answer a redelivered request again
without running it twice. QoS 1 redelivers within seconds of a reconnection, and a hub
retries a transaction only while it waits for that one answer, so a few hundred is ample
and bounds the memory a flood of distinct transactions can take."""


MAX_REASON_CHARS: Final = 64
"""Longest ``last_bundle.reason`` in the state (the schema's cap); reasons are short codes."""


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
    state_interval_s: float = 60.0
    """Republish the retained state this often even when nothing happened, so the outbox
    counters the hub sees are never older than this and a state the broker lost in a crash
    comes back without waiting for a reconnection."""


@dataclass
class SyncStats:
    published: int = 0
    acked_rows: int = 0
    connects: int = 0
    disconnects: int = 0
    rejected_acks: int = 0
    manifests: int = 0
    """Bundle manifest messages received (each (re)subscription delivers the retained one)."""
    states: int = 0
    """State messages published."""
    commands: int = 0
    """Command requests executed (or refused as expired); repeats are not counted here."""
    repeated_commands: int = 0
    """Redelivered transactions answered from memory without running them again."""
    rejected_commands: int = 0
    """Command requests refused before reading them (bad topic or payload: counted in
    ``payloads.REJECTIONS`` too); no response is possible without a trusted transaction."""
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
        self._deferred: dict[str, bytes] = {}
        """Per bundle type, a canary envelope to fetch once the stable download of that type
        is done (see ``_on_manifest``)."""
        self.outcomes: list[Outcome] = []
        """What became of every complete bundle offered to the store, newest last."""
        self._bundles: BundleStore | None = None
        self._held: list[dict[str, Any]] = []
        self._last_bundle: dict[str, Any] | None = None
        self._state_due = False
        self._next_state_at = 0.0
        self._responses: OrderedDict[str, bytes] = OrderedDict()
        """Encoded response per recent transaction, oldest first (at most COMMAND_MEMORY)."""

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
            self._state_due = True  # the hub learns what this cart runs before its backlog
        elif kind == "disconnected":
            if self._connected:
                self.stats.disconnects += 1
                self._lost_at = time.monotonic()
            self._connected = False
        elif kind == "message":
            self._on_message_data(basket, *data)
        if self._connected:
            self._publish_state_if_due(basket)
            self._publish_pending(basket)

    def _on_message_data(self, basket: BasketStore, topic: str, raw: bytes) -> None:
        try:
            parsed, message = payloads.decode_message(topic, raw)
        except CartosError as exc:
            if topic == topics.ack(self.store, self.cart):
                self.stats.rejected_acks += 1
            elif topic == topics.command_request(self.store, self.cart):
                self.stats.rejected_commands += 1
            log.warning("message on %s refused: %s", topic[:120], exc)
            return
        if parsed.kind == Kind.ACK:
            self._on_ack(basket, message)
        elif parsed.kind == Kind.CMD_REQ:
            self._on_command(basket, message)
        elif parsed.kind == Kind.BUNDLE_MANIFEST:
            self.stats.manifests += 1
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
        self._deferred.clear()  # this manifest says anew what comes after what
        stable = self._acceptable(message.get("bundles", []))
        canary = message.get("canary")
        candidates = (self._acceptable(canary["bundles"])
                      if canary is not None and self.cart in canary["carts"] else {})
        for bundle_type, (envelope, manifest) in stable.items():
            later = candidates.pop(bundle_type, None)
            if later is not None and later[1].version > manifest.version:
                # Stable first, the candidate once it is in: a rollback of the candidate then
                # lands on stable. Straight to the candidate, the store's previous slot would
                # be older than stable, and stable, below the high-water, never comes back.
                self._deferred[bundle_type] = later[0]
            self._download(envelope, manifest)
        for envelope, manifest in candidates.values():
            self._download(envelope, manifest)

    def _acceptable(self, texts: list[Any]) -> dict[str, tuple[bytes, Manifest]]:
        """Per bundle type, the newest of ``texts`` that the store would accept now.

        Only the newest: fetching an older one too would at best be applied and replaced at
        once, at worst finish last and be reported as a refused older version."""
        newest: dict[str, tuple[bytes, Manifest]] = {}
        for text in texts:
            envelope = str(text).encode()
            manifest = self._checked(envelope)
            if manifest is None:
                continue
            best = newest.get(manifest.type)
            if best is None or manifest.version > best[1].version:
                newest[manifest.type] = (envelope, manifest)
        return newest

    def _checked(self, envelope: bytes) -> Manifest | None:
        """The manifest of ``envelope`` if the store would accept it now, else None."""
        assert self._bundles is not None
        try:
            return self._bundles.check(envelope).manifest
        except BundleRejected as exc:
            if exc.reason not in ("older_version", "replay"):
                log.warning("bundle refused before download: %s", exc)
            return None

    def _download(self, envelope: bytes, manifest: Manifest) -> None:
        """Start (or resume from staging) fetching a checked bundle; a download of an older
        version of its type is dropped, and none starts if a newer one is under way."""
        ref = topics.bundle_ref(manifest.type, manifest.version)
        if ref in self._downloads:
            return
        for other, (_e, running) in list(self._downloads.items()):
            if running.manifest.type != manifest.type:
                continue
            if running.manifest.version > manifest.version:
                return
            self._forget(other)
        assembler = ChunkAssembler(self._staging / ref, manifest)
        self._downloads[ref] = (envelope, assembler)
        if assembler.complete:  # every chunk was staged before a restart
            self._finish(ref)
        else:
            self._client.subscribe(topics.bundle_parts_filter(self.store, ref), qos=1)

    def _forget(self, ref: str) -> None:
        """Stop downloading ``ref`` and delete what was staged for it."""
        _envelope, assembler = self._downloads.pop(ref)
        self._client.unsubscribe(topics.bundle_parts_filter(self.store, ref))
        assembler.discard()

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
        log.info("bundle %s: %s %s %s", ref, outcome.status, outcome.reason or "",
                 outcome.detail)
        bundle_type = assembler.manifest.type
        self._record_outcome(outcome, bundle_type, assembler.manifest.version)
        later = self._deferred.pop(bundle_type, None)
        if later is not None:  # the canary candidate waiting for stable to be in
            manifest = self._checked(later)
            if manifest is not None:
                self._download(later, manifest)

    def _record_outcome(self, outcome: Outcome, bundle_type: str, version: int | None) -> None:
        """After an offer or a rollback: refresh what the cart holds, remember the outcome for
        the state (which goes out next), tell the listener.

        ``bundle_type``/``version`` say what the outcome is about when the outcome itself
        does not: a bundle refused during verification comes back without them, and the
        hub's canary monitor still needs to know which release this cart refused."""
        assert self._bundles is not None
        self._held = [dict(h) for h in self._bundles.holding()]
        known = outcome.type is not None
        reason = outcome.reason[:MAX_REASON_CHARS] if outcome.reason is not None else None
        self._last_bundle = {"type": outcome.type if known else bundle_type,
                             "version": outcome.version if known else version,
                             "status": outcome.status, "reason": reason}
        self._state_due = True
        if self._on_outcome is not None:
            try:
                self._on_outcome(outcome)
            except Exception:  # a listener's bug must not stop the downlink
                log.exception("bundle outcome listener failed")

    def holding(self) -> list[dict[str, Any]]:
        """The bundles the cart runs (``BundleStore.holding``, refreshed by the worker thread,
        which alone may touch the store)."""
        return list(self._held)

    @property
    def last_bundle(self) -> dict[str, Any] | None:
        """The latest bundle outcome as the state reports it (``type``, ``version``,
        ``status``, ``reason``), or None before the first one since start."""
        return None if self._last_bundle is None else dict(self._last_bundle)

    # -- state -----------------------------------------------------------------------------------

    def _state_fields(self, basket: BasketStore) -> dict[str, Any]:
        """The state message without its id: also the ``status`` command's result."""
        fields: dict[str, Any] = {
            "cart": self.cart,
            "store": self.store,
            "sent_at": self._clock(),
            "status": "online",
            "bundles": [dict(h) for h in self._held],
            "outbox": {stream: {"last_seq": st.last_seq, "acked_seq": st.acked_seq,
                                "pending": st.pending, "dropped": st.dropped}
                       for stream, st in basket.outbox_stats().items()},
        }
        if self._last_bundle is not None:
            fields["last_bundle"] = dict(self._last_bundle)
        return fields

    def _publish_state_if_due(self, basket: BasketStore) -> None:
        if self._state_due or time.monotonic() >= self._next_state_at:
            self._publish_state(basket)

    def _publish_state(self, basket: BasketStore) -> str | None:
        """Publish the retained state now; its id, or None if it could not be sent (it is
        then sent again on the next pass)."""
        self._state_due = False
        self._next_state_at = time.monotonic() + self.settings.state_interval_s
        state_id = payloads.new_id()
        try:
            raw = payloads.encode("state", {"id": state_id, **self._state_fields(basket)})
        except CartosError as exc:  # a bug on this side; the uplink carries on without it
            log.error("state not published: %s", exc)
            return None
        info = self._client.publish(topics.state(self.store, self.cart), raw, qos=1,
                                    retain=True)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._state_due = True
            return None
        self.stats.states += 1
        return state_id

    # -- commands --------------------------------------------------------------------------------

    def _on_command(self, basket: BasketStore, request: dict[str, Any]) -> None:
        """Answer one schema-valid request: from memory if its transaction was seen, else run
        it (unless expired) and remember the encoded response, so a resend is byte-identical
        (same id: the hub deduplicates it like any other message)."""
        transaction = str(request["transaction"])
        topic = topics.command_response(self.store, self.cart)
        seen = self._responses.get(transaction)
        if seen is not None:
            self._responses.move_to_end(transaction)
            self.stats.repeated_commands += 1
            self._client.publish(topic, seen, qos=1)
            return
        self.stats.commands += 1
        expires_at = request.get("expires_at")
        now = self._clock()
        if expires_at is not None and now > float(expires_at):
            response = _error(transaction, now, "expired",
                              f"expired at {expires_at} (cart clock {now:.3f}); not run")
        else:
            response = self._execute(basket, transaction, str(request["command"]),
                                     dict(request.get("args", {})))
        try:
            raw = payloads.encode("cmd_res", response)
        except CartosError as exc:  # e.g. a result over the size cap: say so instead
            raw = payloads.encode("cmd_res", _error(transaction, self._clock(), "internal",
                                                    f"response not encodable: {exc}"))
        self._responses[transaction] = raw
        while len(self._responses) > COMMAND_MEMORY:
            self._responses.popitem(last=False)
        self._client.publish(topic, raw, qos=1)

    def _execute(self, basket: BasketStore, transaction: str, command: str,
                 args: dict[str, Any]) -> dict[str, Any]:
        handler = self._commands().get(command)
        if handler is None:
            return _error(transaction, self._clock(), "unknown_command",
                          f"this cart does not know the command {command!r}")
        log.info("command %s (transaction %s)", command, transaction)
        try:
            result = handler(basket, args)
        except _CommandError as exc:
            return _error(transaction, self._clock(), exc.code, exc.message)
        except Exception as exc:  # a command's bug must not stop the worker
            log.exception("command %s failed", command)
            return _error(transaction, self._clock(), "internal",
                          f"{type(exc).__name__}: {exc}")
        return {"transaction": transaction, "status": "ok", "sent_at": self._clock(),
                "result": result}

    def _commands(self) -> dict[str, Callable[[BasketStore, dict[str, Any]], dict[str, Any]]]:
        return {
            "status": self._cmd_status,
            "rollback": self._cmd_rollback,
            "reconcile": self._cmd_reconcile,
            "publish_state": self._cmd_publish_state,
        }

    def _cmd_status(self, basket: BasketStore, _args: dict[str, Any]) -> dict[str, Any]:
        return self._state_fields(basket)

    def _cmd_rollback(self, _basket: BasketStore, args: dict[str, Any]) -> dict[str, Any]:
        """``{"type": T}``: back to the previous bundle of type T (or the baseline)."""
        try:
            bundle_type = topics.validate_bundle_type(args.get("type"))
        except TopicError as exc:
            raise _CommandError("bad_args", 'rollback takes args {"type": <bundle type>}') from exc
        if self._bundles is None:
            raise _CommandError("no_bundles", "this cart runs without a bundle store")
        if self._bundles.current(bundle_type) is None:
            raise _CommandError("nothing_to_roll_back", f"no {bundle_type} bundle installed")
        try:
            outcome = self._bundles.rollback(bundle_type)
        except BundleStoreError as exc:
            raise _CommandError("rollback_failed", str(exc)) from exc
        log.info("bundle %s rolled back on request: %s", bundle_type, outcome.detail)
        self._record_outcome(outcome, bundle_type, outcome.version)
        return {"status": outcome.status, "type": bundle_type, "version": outcome.version,
                "detail": outcome.detail}

    def _cmd_reconcile(self, _basket: BasketStore, _args: dict[str, Any]) -> dict[str, Any]:
        """Forget every download under way (staged chunks included: a download stuck on a
        chunk that conflicts with what the hub now publishes starts clean) and subscribe to
        the manifest again, which makes the broker deliver the retained one again."""
        forgotten = sorted(self._downloads)
        for ref in forgotten:
            self._forget(ref)
        self._deferred.clear()  # the manifest, delivered again, says it again
        manifest = topics.bundle_manifest(self.store)
        self._client.subscribe(manifest, qos=topics.spec(Kind.BUNDLE_MANIFEST).qos)
        return {"forgotten": forgotten}

    def _cmd_publish_state(self, basket: BasketStore, _args: dict[str, Any]) -> dict[str, Any]:
        state_id = self._publish_state(basket)
        if state_id is None:
            raise _CommandError("not_published", "the state could not be published")
        return {"state_id": state_id}

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


class _CommandError(Exception):
    """A command refused with a stable ``code`` (the response's ``error.code``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _error(transaction: str, sent_at: float, code: str, message: str) -> dict[str, Any]:
    """An error response (``cmd_res.schema.json``); the message is cut to the schema's cap."""
    return {"transaction": transaction, "status": "error", "sent_at": sent_at,
            "error": {"code": code, "message": message[:1024]}}
