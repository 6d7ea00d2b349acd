"""How the hub opens each of its SQLite files: durable, shared by threads, wiped when freed.

Every hub file (messages, review queue, drift ledger) holds what carts sent, acknowledged
only after it is on disk: WAL with ``synchronous=FULL`` so a commit survives power loss,
``secure_delete`` so a purged crop or redacted field does not linger in free pages, and one
connection shared by the MQTT worker and the API threads (callers hold their own lock).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cartos.hub.errors import HubStorageError


def open_durable(path: Path, schema: str, what: str) -> sqlite3.Connection:
    """Open (creating) ``path`` with ``schema`` applied; :class:`HubStorageError` naming
    ``what`` when it cannot be."""
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise HubStorageError(f"{what} {path} cannot be opened: {exc}") from exc
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA secure_delete = ON")
        conn.executescript(schema)
    except sqlite3.Error as exc:
        conn.close()
        raise HubStorageError(f"{what} {path} cannot be opened: {exc}") from exc
    return conn


CURSORS_SCHEMA = "CREATE TABLE IF NOT EXISTS cursors (cart TEXT PRIMARY KEY, seq INTEGER NOT NULL);"
"""A consumer's position in each cart's stream (``Hub.add_consumer``), kept in the consumer's
own file and advanced in the same transaction as what it took in."""


def read_cursor(conn: sqlite3.Connection, cart: str) -> int:
    """The seq ``cart``'s stream was consumed up to (0: nothing yet)."""
    row = conn.execute("SELECT seq FROM cursors WHERE cart = ?", (cart,)).fetchone()
    return int(row[0]) if row else 0


def advance_cursor(conn: sqlite3.Connection, cart: str, seq: int) -> None:
    """Move ``cart``'s cursor to ``seq``; never backwards."""
    conn.execute("INSERT INTO cursors(cart, seq) VALUES (?, ?) "
                 "ON CONFLICT(cart) DO UPDATE SET seq = max(seq, excluded.seq)", (cart, seq))
