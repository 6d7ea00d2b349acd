"""``cartos bench sync``: corrections from one cart to the hub through random outages.

Starts its own Mosquitto on a free port, a hub (in this process, straight to
the broker) and a cart process (through a TCP relay that can reset
connections). The cart writes ``messages`` corrections into its basket and
uplinks them; meanwhile ``outages`` random faults are injected, one at a
time: the broker SIGKILLed and restarted (it loses what it had acknowledged
but not saved), every connection reset mid-publish, or the cart process
SIGKILLed and restarted. At the end the hub's committed corrections are
compared with what the cart wrote: the same sequence numbers 1..N, each
once. Reconnection time is measured from the end of each outage to the
cart's next retained ``online``.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cartos.basket.store import BasketStore
from cartos.bench.broker import Broker, find_mosquitto
from cartos.bench.tcp_proxy import TcpRelay
from cartos.errors import CartosError
from cartos.hub.service import Hub, HubSettings
from cartos.sync import topics

STORE, CART, HUB_ID = "s001", "cart-s001-0001", "hub-s001"
OUTAGE_KINDS = ("broker_kill", "connection_reset", "cart_kill")

LogFn = Callable[[str], None]


class _Availability:
    """Watches the cart's availability topic; remembers when (wall clock) it went online."""

    def __init__(self, port: int) -> None:
        self.online: list[float] = []
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-watch")
        self._client.on_connect = lambda c, *_: c.subscribe(topics.available(STORE, CART), 1)
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 1)
        self._client.connect_async("127.0.0.1", port)
        self._client.loop_start()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        # The cart's own timestamp, not the arrival: this watcher may itself be reconnecting
        # after a broker crash and then only sees the retained copy, later.
        try:
            payload = json.loads(message.payload)
            status, sent_at = payload.get("status"), float(payload.get("sent_at"))
        except (ValueError, AttributeError, TypeError):
            return
        if status == "online":
            with self._lock:
                self.online.append(sent_at)

    def first_online_after(self, t: float) -> float | None:
        with self._lock:
            later = [x for x in self.online if x >= t]
        return min(later) if later else None

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def _cart_process(basket: Path, port: int, total: int, rate: float,
                  log_file: Path) -> subprocess.Popen[bytes]:
    with log_file.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cartos.bench.sync_cart", str(basket), STORE, CART,
             str(port), str(total), f"{rate:.3f}"], stdout=subprocess.DEVNULL, stderr=log)


def _corrections_state(basket: Path) -> tuple[int, int]:
    """(written, still pending) corrections of the cart's basket."""
    with BasketStore(basket) as store:
        s = store.outbox_stats()["corrections"]
        return s.last_seq, s.pending


def run(messages: int = 10_000, outages: int = 100, seed: int = 0,
        log: LogFn = lambda _m: None, timeout_s: float = 1200.0) -> dict[str, Any]:
    exe = find_mosquitto()
    if exe is None:
        raise CartosError("mosquitto is not installed (apt-get install mosquitto)")
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="cartos-bench-sync-") as tmp:
        root = Path(tmp)
        broker = Broker(root / "broker", executable=exe)
        relay = TcpRelay(broker.port)
        hub = Hub(root / "hub.db", STORE, HUB_ID, HubSettings(port=broker.port)).start()
        watch = _Availability(broker.port)
        basket = root / "basket.db"
        # Paced so that corrections are still being written when the last outage strikes
        # (an outage takes about 0.7 s of waiting plus the recovery, 1.3 s in all here).
        rate = messages / max(1.0, outages * 1.2)
        cart = _cart_process(basket, relay.port, messages, rate, root / "cart.log")
        reconnects: list[float] = []
        counts = dict.fromkeys(OUTAGE_KINDS, 0)
        start = time.monotonic()
        try:
            for n in range(outages):
                time.sleep(rng.uniform(0.2, 1.2))  # traffic flows between faults
                kind = rng.choice(OUTAGE_KINDS)
                counts[kind] += 1
                if kind == "broker_kill":
                    broker.kill()
                    time.sleep(rng.uniform(0.0, 0.5))
                    broker.start()
                elif kind == "connection_reset":
                    relay.reset()
                else:
                    cart.kill()
                    cart.wait(10)
                    cart = _cart_process(basket, relay.port, messages, rate, root / "cart.log")
                ended = time.time()
                deadline = ended + 30.0
                while (back := watch.first_online_after(ended)) is None \
                        and time.time() < deadline:
                    time.sleep(0.02)
                reconnects.append((back or deadline) - ended)
                if (n + 1) % 10 == 0:
                    written, pending = _corrections_state(basket)
                    log(f"  outage {n + 1}/{outages}: written {written}, pending {pending}, "
                        f"hub committed {hub.committed}, duplicates {hub.duplicates}")
            written_at_last_outage = _corrections_state(basket)[0]
            while time.monotonic() - start < timeout_s:
                written, pending = _corrections_state(basket)
                if written >= messages and pending == 0:
                    break
                time.sleep(0.2)
        finally:
            cart.terminate()
            try:
                cart.wait(10)
            except subprocess.TimeoutExpired:
                cart.kill()
            watch.close()
            hub.stop()
            relay.close()
            broker.close()
        written, pending = _corrections_state(basket)
        import sqlite3

        conn = sqlite3.connect(str(root / "hub.db"))
        try:
            seqs = [int(r[0]) for r in conn.execute(
                "SELECT seq FROM messages WHERE cart = ? AND stream = 'corrections'", (CART,))]
            duplicates = int((conn.execute(
                "SELECT value FROM counters WHERE name = 'duplicates'").fetchone() or [0])[0])
        finally:
            conn.close()
    committed = set(seqs)
    expected = set(range(1, written + 1))
    return {
        "sent": written,
        "committed": len(committed & expected),
        "missing": len(expected - committed),
        "extra": len(committed - expected),
        "pending_on_cart": pending,
        "duplicates_dropped": duplicates,
        "outages": counts,
        "max_reconnect_s": round(max(reconnects), 2) if reconnects else None,
        "p50_reconnect_s": round(sorted(reconnects)[len(reconnects) // 2], 2)
        if reconnects else None,
        "written_during_outages": written_at_last_outage,
        "seconds": round(time.monotonic() - start, 1),
        "seed": seed,
    }
