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
