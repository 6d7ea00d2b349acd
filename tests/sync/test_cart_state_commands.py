"""The cart's retained state, its command requests and canary bundles, through a real Mosquitto.

The hub side here is a bare MQTT client with a signing key: it publishes signed bundles
(chunks, then the retained manifest, canary list included) and command requests, and reads
the cart's state and responses the way the hub does, so only the cart is under test.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cartos.basket.events import ItemAdded, SessionOpened
from cartos.basket.store import BasketStore
from cartos.sync import payloads, topics
from cartos.sync.bundles import (
    BundleStore,
    Manifest,
    build_manifest,
    generate_private_key,
    issue_signing_key,
    public_key_hex,
    split_part,
)
from cartos.sync.cart_client import CartSync, SyncSettings
from tests.sync.broker import Broker
from tests.waiting import wait_until

STORE, CART, OTHER = "s001", "cart-s001-0001", "cart-s001-0002"
DAY = 86_400


def _client(port: int, client_id: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _close(client: mqtt.Client) -> None:
    client.loop_stop()
    client.disconnect()


Release = tuple[bytes, Manifest, dict[str, bytes]]


class Hub:
    """The hub's publishing side: a root, a signing key and an MQTT client. Chunks and the
    manifest are published separately, so a test can name a canary or leave chunks out."""

    def __init__(self, port: int) -> None:
        self.root = generate_private_key()
        now = int(time.time())
        self.key = issue_signing_key(self.root, "hub-s001-a", not_before=now - DAY,
                                     not_after=now + 30 * DAY, stores=[STORE])
        self.client = _client(port, "hub-s001")

    @property
    def root_hex(self) -> str:
        return public_key_hex(self.root)

    def bundle(self, version: int) -> Release:
        issued_at = int(time.time()) - 60
        parts = {"prototypes": bytes([version]) * 3000, "thresholds": b'{"accept": 0.9}'}
        manifest = build_manifest(bundle_type="catalogue", store=STORE, version=version,
                                  issued_at=issued_at, expires_at=issued_at + 7 * DAY,
                                  key_id=self.key.key_id,
                                  parts={n: (n, d) for n, d in parts.items()})
        return self.key.sign(manifest), manifest, parts

    def chunks(self, release: Release) -> None:
        _envelope, manifest, parts = release
        ref = topics.bundle_ref(manifest.type, manifest.version)
        infos = [
            self.client.publish(
                topics.bundle_chunk(STORE, ref, name, chunk.index),
                payloads.encode("bundle_chunk", payloads.chunk_payload(manifest.type, chunk)),
                qos=1, retain=True)
            for name, data in parts.items()
            for chunk in split_part(manifest, name, data, 1024)
        ]
        for info in infos:
            info.wait_for_publish(5)

    def manifest(self, stable: list[Release], canary: tuple[list[str], list[Release]] | None = None
                 ) -> None:
        message: dict[str, Any] = {
            "bundles": [r[0].decode() for r in stable],
            "certificates": [self.key.certificate_envelope.decode()],
        }
        if canary is not None:
            message["canary"] = {"carts": canary[0], "bundles": [r[0].decode() for r in canary[1]]}
        self.client.publish(topics.bundle_manifest(STORE),
                            payloads.encode("bundle_manifest", message),
                            qos=1, retain=True).wait_for_publish(5)

    def release(self, version: int) -> Release:
        """Chunks first, then the manifest: a cart never sees a bundle it cannot fetch."""
        release = self.bundle(version)
        self.chunks(release)
        self.manifest([release])
        return release

    def close(self) -> None:
        _close(self.client)


class Listener:
    """Collects the decoded messages of one topic with their retain flags."""

    def __init__(self, port: int, topic: str, kind: str, client_id: str) -> None:
        self._lock = threading.Lock()
        self._got: list[tuple[dict[str, Any], bool]] = []
        self.kind = kind
        self.client = _client(port, client_id)
        self.client.on_message = self._on_message
        self.client.subscribe(topic, qos=1)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        decoded = payloads.decode(self.kind, message.payload, counter=None)
        with self._lock:
            self._got.append((decoded, bool(message.retain)))

    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m, _r in self._got]

    def received(self) -> list[tuple[dict[str, Any], bool]]:
        with self._lock:
            return list(self._got)

    def close(self) -> None:
        _close(self.client)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class Commander(Listener):
    """Sends command requests to one cart and reads its responses."""

    def __init__(self, port: int, cart: str = CART) -> None:
        super().__init__(port, topics.command_response(STORE, cart), "cmd_res", "commander")
        self.cart = cart
        self._n = 0

    def send(self, command: str, args: dict[str, Any] | None = None, *,
             transaction: str | None = None, expires_at: float | None = None) -> str:
        self._n += 1
        transaction = transaction or f"tx-{self._n}-{payloads.new_id()[:8]}"
        request: dict[str, Any] = {"transaction": transaction, "command": command,
                                   "sent_at": time.time()}
        if args is not None:
            request["args"] = args
        if expires_at is not None:
            request["expires_at"] = expires_at
        self.raw(payloads.encode("cmd_req", request))
        return transaction

    def raw(self, payload: bytes) -> None:
        self.client.publish(topics.command_request(STORE, self.cart), payload,
                            qos=1).wait_for_publish(5)

    def responses(self, transaction: str) -> list[dict[str, Any]]:
        return [m for m in self.messages() if m["transaction"] == transaction]

    def answer(self, transaction: str, count: int = 1) -> dict[str, Any]:
        wait_until(lambda: len(self.responses(transaction)) >= count, 10,
              f"response #{count} to {transaction}")
        return self.responses(transaction)[count - 1]

    def call(self, command: str, args: dict[str, Any] | None = None, *,
             transaction: str | None = None, expires_at: float | None = None) -> dict[str, Any]:
        return self.answer(self.send(command, args, transaction=transaction,
                                     expires_at=expires_at))


def _bundle_store(path: Path, root_hex: str) -> Callable[[], BundleStore]:
    def apply(manifest: Manifest, parts: Mapping[str, bytes], conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS applied (version INTEGER)")
        conn.execute("INSERT INTO applied VALUES (?)", (manifest.version,))

    def restore(current: Manifest, _previous: Manifest | None, _parts: Mapping[str, bytes],
                conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM applied WHERE version = ?", (current.version,))

    return lambda: BundleStore(path, root_key=root_hex, store_id=STORE, apply=apply,
                               restore=restore)


@pytest.fixture()
def hub(broker: Broker) -> Iterator[Hub]:
    hub = Hub(broker.port)
    yield hub
    hub.close()


@pytest.fixture()
def commander(broker: Broker, hub: Hub) -> Iterator[Commander]:
    """Created after ``hub`` (closed before it), as each test did by hand."""
    with Commander(broker.port) as commander:
        yield commander


@contextmanager
def _cart(folder: Path, port: int, root_hex: str, cart: str = CART,
          **settings: Any) -> Iterator[CartSync]:
    """A started cart, stopped on leaving."""
    folder.mkdir(parents=True, exist_ok=True)
    sync = CartSync(folder / "basket.db", STORE, cart, SyncSettings(port=port, **settings),
                    bundles=_bundle_store(folder / "bundles.db", root_hex),
                    staging=folder / "staging").start()
    try:
        yield sync
    finally:
        sync.stop()


def _version(cart: CartSync) -> int:
    return max((int(h["version"]) for h in cart.holding() if h["type"] == "catalogue"),
               default=0)


def _write_corrections(path: Path, n: int) -> None:
    with BasketStore(path) as basket:
        basket.apply(SessionOpened("open", "0f1e2d3c-0000-4000-8000-000000000001"))
        for i in range(n):
            basket.apply(ItemAdded(f"answer:{i}", f"sku-{i}", 1, corrects=f"prompt:{i}"))


# -- state ------------------------------------------------------------------------------------


def test_state_is_retained_and_tells_a_late_subscriber_bundles_outbox_and_last_bundle(
    broker: Broker, hub: Hub, tmp_path: Path
) -> None:
    with Listener(broker.port, topics.state(STORE, CART), "state", "watcher") as watcher:
        hub.release(1)
        (tmp_path / "cart").mkdir()
        _write_corrections(tmp_path / "cart" / "basket.db", 3)  # no hub acks them: pending
        with _cart(tmp_path / "cart", broker.port, hub.root_hex, state_interval_s=0.3):
            wait_until(lambda: any("last_bundle" in s for s in watcher.messages()), 10,
                       "a state after the bundle")
            first = watcher.messages()[0]
            assert first["status"] == "online"  # published on connection, before any bundle
            seen = len(watcher.messages())
            wait_until(lambda: len(watcher.messages()) >= seen + 2, 3, "periodic states")

        with Listener(broker.port, topics.state(STORE, CART), "state", "late") as late:
            wait_until(lambda: bool(late.received()), 5, "the retained state")
            state, retained = late.received()[0]
        assert retained
        wait_until(lambda: watcher.messages()[-1]["id"] == state["id"], 2,
                   "the retained state to be the last one published")
        assert len({s["id"] for s in watcher.messages()}) == len(watcher.messages())
        assert state["cart"] == CART and state["store"] == STORE
        assert state["bundles"] == [{"store": STORE, "type": "catalogue", "version": 1}]
        assert state["last_bundle"] == {"type": "catalogue", "version": 1,
                                        "status": "applied", "reason": None}
        corrections = state["outbox"]["corrections"]
        assert corrections == {"last_seq": 3, "acked_seq": 0, "pending": 3, "dropped": 0}
        assert set(state["outbox"]) == {"events", "corrections", "review", "telemetry"}


# -- commands ---------------------------------------------------------------------------------


def test_commands_are_answered_with_their_transaction_and_run_at_most_once(
    broker: Broker, hub: Hub, commander: Commander, tmp_path: Path
) -> None:
    with _cart(tmp_path / "cart", broker.port, hub.root_hex) as cart:
        hub.release(1)
        wait_until(lambda: _version(cart) == 1, 10, "v1")
        hub.release(2)
        wait_until(lambda: _version(cart) == 2, 10, "v2")

        status = commander.call("status")
        assert status["status"] == "ok" and "error" not in status
        result = status["result"]
        assert result["cart"] == CART and result["status"] == "online"
        assert result["bundles"] == [{"store": STORE, "type": "catalogue", "version": 2}]
        assert result["last_bundle"]["version"] == 2 and "corrections" in result["outbox"]

        expired = commander.call("rollback", {"type": "catalogue"},
                                 expires_at=time.time() - 1)
        assert expired["status"] == "error" and expired["error"]["code"] == "expired"
        assert "result" not in expired
        assert _version(cart) == 2  # not run

        unknown = commander.call("self_destruct")
        assert unknown["status"] == "error" and unknown["error"]["code"] == "unknown_command"
        bad = commander.call("rollback", {"type": "Catalogue/../x"})
        assert bad["error"]["code"] == "bad_args"

        # A rollback redelivered (same transaction, new message id) runs once.
        first = commander.call("rollback", {"type": "catalogue"}, transaction="tx-rollback-1")
        assert first["status"] == "ok"
        assert first["result"]["status"] == "rolled_back" and first["result"]["version"] == 1
        commander.send("rollback", {"type": "catalogue"}, transaction="tx-rollback-1")
        again = commander.answer("tx-rollback-1", count=2)
        assert again == first  # the very same response message, id included
        assert _version(cart) == 1 and cart.holding() != []  # not rolled back to the baseline
        assert cart.stats.repeated_commands == 1
        assert cart.last_bundle == {"type": "catalogue", "version": 1,
                                    "status": "rolled_back", "reason": "requested"}

        # A new transaction does run: back to the baseline, then nothing left.
        baseline = commander.call("rollback", {"type": "catalogue"})
        assert baseline["result"]["version"] is None and cart.holding() == []
        nothing = commander.call("rollback", {"type": "catalogue"})
        assert nothing["error"]["code"] == "nothing_to_roll_back"

        states = cart.stats.states
        published = commander.call("publish_state")
        assert published["status"] == "ok" and cart.stats.states > states
        assert len(published["result"]["state_id"]) == 32


def test_reconcile_forgets_a_stuck_download_and_gets_the_manifest_again(
    broker: Broker, hub: Hub, commander: Commander, tmp_path: Path
) -> None:
    release = hub.bundle(1)
    hub.manifest([release])  # announced, but its chunks never arrived: the download hangs
    with _cart(tmp_path / "cart", broker.port, hub.root_hex) as cart:
        wait_until(lambda: cart.stats.manifests == 1, 10, "the manifest")
        time.sleep(0.3)
        assert _version(cart) == 0

        answer = commander.call("reconcile")
        assert answer["status"] == "ok"
        assert answer["result"] == {"forgotten": ["catalogue-1"]}
        wait_until(lambda: cart.stats.manifests == 2, 5, "the retained manifest delivered again")

        hub.chunks(release)  # the download the manifest restarted now completes
        wait_until(lambda: _version(cart) == 1, 10, "v1 after the chunks came")
        assert [o.version for o in cart.outcomes] == [1]


def test_hostile_requests_are_counted_and_the_cart_still_answers(
    broker: Broker, hub: Hub, commander: Commander, tmp_path: Path
) -> None:
    now = time.time()
    hostile = [
        b"",
        b"\xff\xfe\xfd not utf-8",
        b"{not json",
        b"[" * 100_000 + b"]" * 100_000,  # too large and too deep
        b'{"a": ' * 40 + b"1" + b"}" * 40,  # deep but small
        b"x" * (70 * 1024),
        b'{"id": "0123456789abcdef", "id": "0123456789abcdef"}',
        b'{"transaction": "t1", "command": "status"}',  # no id, no sent_at
        f'{{"id": "0123456789abcdef", "transaction": "a/b#", "command": "status", '
        f'"sent_at": {now}}}'.encode(),
        f'{{"id": "0123456789abcdef", "transaction": "t2", "command": "status", '
        f'"sent_at": {now}, "args": [1]}}'.encode(),
        b'{"id": "0123456789abcdef", "transaction": "t3", "command": "status", '
        b'"sent_at": NaN}',
    ]
    with _cart(tmp_path / "cart", broker.port, hub.root_hex) as cart:
        before = payloads.REJECTIONS.count("cmd_req")
        wait_until(lambda: cart.connected, 10, "the cart to connect")
        for raw in hostile:
            commander.raw(raw)
        ok = commander.call("status")
        assert ok["status"] == "ok" and ok["result"]["cart"] == CART
        assert cart.stats.rejected_commands == len(hostile)
        assert payloads.REJECTIONS.count("cmd_req") - before == len(hostile)
        assert [m["transaction"] for m in commander.messages()] == [ok["transaction"]]


# -- canary -----------------------------------------------------------------------------------


def test_a_listed_cart_applies_the_canary_bundle_and_the_others_stay_on_stable(
    broker: Broker, hub: Hub, tmp_path: Path
) -> None:
    stable, candidate = hub.bundle(1), hub.bundle(2)
    hub.chunks(stable)
    hub.chunks(candidate)
    hub.manifest([stable], canary=([CART, "cart-s001-0099"], [candidate]))
    with (_cart(tmp_path / "canary", broker.port, hub.root_hex, CART) as canary,
          _cart(tmp_path / "other", broker.port, hub.root_hex, OTHER) as other):
        wait_until(lambda: _version(canary) == 2 and _version(other) == 1, 10,
                   "the canary on v2, the other cart on v1")
        time.sleep(0.5)
        assert _version(other) == 1
        # Stable first, then the candidate: rolling the candidate back must land on stable.
        assert [(o.status, o.version) for o in canary.outcomes] == [("applied", 1),
                                                                    ("applied", 2)]
        assert [o.version for o in other.outcomes] == [1]
        assert canary.last_bundle == {"type": "catalogue", "version": 2,
                                      "status": "applied", "reason": None}

        # The other cart, already on stable, is listed now: it takes only the candidate.
        hub.manifest([stable], canary=([CART, OTHER], [candidate]))
        wait_until(lambda: _version(other) == 2, 10, "the newly listed cart on v2")
        assert [o.version for o in other.outcomes] == [1, 2]

        # The candidate withdrawn: the canary keeps it until told to roll back, which brings
        # it back to stable (not to the baseline: stable, below the high-water, would never
        # be installed again).
        hub.manifest([stable])
        with Commander(broker.port, CART) as commander:
            wait_until(lambda: canary.stats.manifests >= 3, 5, "the new manifest")
            assert _version(canary) == 2
            answer = commander.call("rollback", {"type": "catalogue"})
            assert answer["result"]["version"] == 1 and _version(canary) == 1
            assert canary.last_bundle == {"type": "catalogue", "version": 1,
                                          "status": "rolled_back", "reason": "requested"}
