"""The hub's view of drift: every cart's drift alerts, and which ones are store-wide.

A cart raises a ``drift`` alert (``cartos.drift``) into its basket; it reaches the hub on
the ``events`` stream like every alert. One cart drifting alone is usually that cart (a
dirty lens, a loose camera); several carts raising the same trigger within a few hours is
the store (new lamps, a new basket liner, a refit of the shelves) and a reason to refresh
the backbone (``cartos model refresh``). :class:`DriftLedger` keeps the alerts (no image,
no session) in its own SQLite file with a per-cart cursor, and :meth:`DriftLedger.summary`
says, per trigger, how many carts raised it recently and whether that is store-wide.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from cartos.hub.errors import HubStorageError
from cartos.hub.message_store import MessageReader
from cartos.hub.sqlite_file import CURSORS_SCHEMA, advance_cursor, open_durable, read_cursor

DRIFT_KIND: Final = "drift"
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY, cart TEXT NOT NULL, trigger TEXT NOT NULL,
    received_at REAL NOT NULL, evidence TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS by_time ON alerts(received_at);
""" + CURSORS_SCHEMA + """
"""
DEFAULT_STORE_WIDE_CARTS: Final = 3
DEFAULT_RECENT_S: Final = 6 * 3600.0



class DriftLedger:
    """Drift alerts of every cart of one store; safe to use from several threads."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = open_durable(path, _SCHEMA, "drift ledger")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def consume(self, db: MessageReader, touched: set[tuple[str, str]]) -> bool:
        """The hub consumer: take in the drift alerts of every touched cart's events."""
        for cart in sorted({c for c, stream in touched if stream in ("events", "*")}):
            self.ingest(db, cart)
        return False

    def ingest(self, db: MessageReader, cart: str) -> int:
        with self._lock:
            messages = db.messages("events", cart, read_cursor(self._conn, cart))
            if not messages:
                return 0
            added = 0
            now = self._clock()
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                for msg in messages:
                    command = msg.body.get("command")
                    if (msg.body.get("type") != "AlertRaised" or not isinstance(command, dict)
                            or command.get("kind") != DRIFT_KIND):
                        continue
                    evidence = command.get("evidence")
                    evidence = evidence if isinstance(evidence, dict) else {}
                    trigger = str(evidence.get("trigger", "unknown"))[:64]
                    cur = self._conn.execute(
                        "INSERT OR IGNORE INTO alerts(id, cart, trigger, received_at, evidence) "
                        "VALUES (?,?,?,?,?)",
                        (msg.id, cart, trigger, now, json.dumps(evidence, sort_keys=True)[:8192]))
                    added += cur.rowcount
                advance_cursor(self._conn, cart, max(m.seq for m in messages))
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise HubStorageError(f"drift alerts of {cart} not stored: {exc}") from exc
        return added

    def summary(self, recent_s: float = DEFAULT_RECENT_S,
                store_wide_carts: int = DEFAULT_STORE_WIDE_CARTS) -> dict[str, Any]:
        """Per trigger: alerts and carts in the last ``recent_s``, and whether at least
        ``store_wide_carts`` carts raised it (store-wide: refresh the backbone)."""
        since = self._clock() - recent_s
        with self._lock:
            rows = self._conn.execute(
                "SELECT trigger, COUNT(*), COUNT(DISTINCT cart), group_concat(DISTINCT cart) "
                "FROM alerts WHERE received_at >= ? GROUP BY trigger ORDER BY trigger",
                (since,)).fetchall()
        triggers = {str(t): {"alerts": int(n), "carts": int(c),
                             "cart_ids": sorted(str(ids).split(",")),
                             "store_wide": int(c) >= store_wide_carts}
                    for t, n, c, ids in rows}
        return {"recent_s": recent_s, "store_wide_carts": store_wide_carts,
                "triggers": triggers,
                "refresh_backbone": any(v["store_wide"] for v in triggers.values())}
