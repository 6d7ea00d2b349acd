"""The hub's durable record of what carts sent: one row per message id, a high-water per stream.

A message is stored once, whatever number of times it arrives (carts resend
everything unacknowledged after every reconnection): the id is the primary
key and a repeat is counted, not stored. What the hub acknowledges to a cart
is computed from what is committed here, never from what arrived, so an ack
always means "safe to forget" (see ``docs/mqtt.md``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cartos.hub.errors import HubStorageError
from cartos.hub.sqlite_file import open_durable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    store TEXT NOT NULL, cart TEXT NOT NULL, stream TEXT NOT NULL,
    seq INTEGER NOT NULL, body TEXT NOT NULL, received_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS by_stream ON messages(cart, stream, seq);
CREATE TABLE IF NOT EXISTS high_water (
    cart TEXT NOT NULL, stream TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (cart, stream)
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER);
"""

GAP_TOLERANT_STREAMS = frozenset({"telemetry"})
"""Streams whose gaps are drops the cart counted: acknowledged up to the highest seq held."""


@dataclass(frozen=True)
class Received:
    """One decoded uplink envelope."""

    id: str
    cart: str
    store: str
    stream: str
    seq: int
    body: dict[str, Any]


class HubStore:
    """SQLite (WAL, ``synchronous=FULL``): messages by id, contiguous high-water per cart stream."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = open_durable(path, _SCHEMA, "hub database")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def commit(self, batch: Iterable[Received]) -> tuple[dict[tuple[str, str], int], int]:
        """Store a batch in one durable transaction.

        Returns the high-water (what may be acknowledged) of every cart stream the
        batch touched, and how many messages were repeats of stored ones.
        """
        now = time.time()
        duplicates = 0
        touched: set[tuple[str, str]] = set()
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for m in batch:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO messages(id, store, cart, stream, seq, body, "
                    "received_at) VALUES (?,?,?,?,?,?,?)",
                    (m.id, m.store, m.cart, m.stream, m.seq,
                     json.dumps(m.body, sort_keys=True), now))
                if cur.rowcount == 0:
                    duplicates += 1
                touched.add((m.cart, m.stream))
            marks = {key: self._advance(*key) for key in touched}
            if duplicates:
                conn.execute("INSERT INTO counters(name, value) VALUES ('duplicates', ?) "
                             "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                             (duplicates,))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise HubStorageError(f"batch not committed: {exc}") from exc
        return marks, duplicates

    def _advance(self, cart: str, stream: str) -> int:
        row = self._conn.execute("SELECT seq FROM high_water WHERE cart = ? AND stream = ?",
                                 (cart, stream)).fetchone()
        mark = int(row[0]) if row else 0
        if stream in GAP_TOLERANT_STREAMS:
            top = self._conn.execute(
                "SELECT MAX(seq) FROM messages WHERE cart = ? AND stream = ?", (cart, stream)
            ).fetchone()[0]
            mark = max(mark, int(top or 0))
        else:
            following = self._conn.execute(
                "SELECT seq FROM messages WHERE cart = ? AND stream = ? AND seq > ? ORDER BY seq",
                (cart, stream, mark)).fetchall()
            for (seq,) in following:
                if int(seq) != mark + 1:
                    break
                mark += 1
        self._conn.execute(
            "INSERT INTO high_water(cart, stream, seq) VALUES (?,?,?) "
            "ON CONFLICT(cart, stream) DO UPDATE SET seq = excluded.seq", (cart, stream, mark))
        return mark

    def high_water(self, cart: str, stream: str) -> int:
        row = self._conn.execute("SELECT seq FROM high_water WHERE cart = ? AND stream = ?",
                                 (cart, stream)).fetchone()
        return int(row[0]) if row else 0

    def ids(self, stream: str | None = None) -> set[str]:
        if stream is None:
            rows = self._conn.execute("SELECT id FROM messages")
        else:
            rows = self._conn.execute("SELECT id FROM messages WHERE stream = ?", (stream,))
        return {str(r[0]) for r in rows}

    def messages(self, stream: str, cart: str, after_seq: int = 0) -> list[Received]:
        """One cart's committed messages of ``stream`` above ``after_seq``, in seq order:
        what a consumer that keeps its own cursor (the catalogue learner) has not seen."""
        rows = self._conn.execute(
            "SELECT id, cart, store, stream, seq, body FROM messages "
            "WHERE stream = ? AND cart = ? AND seq > ? ORDER BY seq", (stream, cart, after_seq))
        return [Received(str(i), str(c), str(st), str(sm), int(q), json.loads(b))
                for i, c, st, sm, q, b in rows]

    def redact(self, stream: str, cart: str, upto_seq: int, path: tuple[str, ...]) -> int:
        """Remove the field at ``path`` from ``cart``'s ``stream`` messages up to ``upto_seq``
        (e.g. a review crop, once the review store holds it under its own retention); freed
        pages are overwritten (``secure_delete``). Returns how many messages changed."""
        pointer = "$." + ".".join(path)
        try:
            cur = self._conn.execute(
                "UPDATE messages SET body = json_remove(body, ?) WHERE stream = ? AND cart = ? "
                "AND seq <= ? AND json_type(body, ?) IS NOT NULL",
                (pointer, stream, cart, upto_seq, pointer))
        except sqlite3.Error as exc:
            raise HubStorageError(f"messages not redacted: {exc}") from exc
        return max(cur.rowcount, 0)

    def carts(self) -> list[str]:
        return [str(r[0]) for r in self._conn.execute(
            "SELECT DISTINCT cart FROM messages ORDER BY cart")]

    def counter(self, name: str) -> int:
        row = self._conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._conn.close()
