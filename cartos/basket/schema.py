"""The basket's SQLite layout and the connection settings its durability depends on.

The basket must come back after ``kill -9`` or a power cut exactly as it was
at the last acknowledged command, so the settings are not tuning knobs:

* ``journal_mode=WAL``: a commit is one append to the log, readers (``cartos
  basket show``) never block the runtime, and a torn write at the tail of the
  log is discarded on recovery;
* ``synchronous=FULL`` for basket commits: the log is fsynced before
  ``COMMIT`` returns, so an acknowledged command survives power loss, not only
  a process crash (``NORMAL`` would lose the last commits on power loss);
* ``foreign_keys=ON``: items, prompts and alerts cannot outlive their session.

Each table holds one kind of state; ``commands`` is the idempotency ledger
(one row per consumed key) and ``outbox`` plus ``streams`` are the durable
queue that the sync layer drains.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 2
"""Layout version stored in ``meta``; bump it (and migrate) when the tables change.

2: ``prompts.context`` (what answering the prompt needs, kept across restarts)."""

STREAMS: tuple[str, ...] = ("events", "corrections", "review", "telemetry")
"""Outbox streams, each with its own contiguous sequence numbers."""

BUSY_TIMEOUT_MS = 5_000
"""How long a writer waits for a reader's checkpoint lock before reporting busy."""

DDL: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
        version INTEGER NOT NULL CHECK (version >= 1),
        opened_at REAL NOT NULL,
        closed_at REAL,
        close_reason TEXT
    )
    """,
    # At most one open session, enforced by the file itself rather than by code.
    """
    CREATE UNIQUE INDEX IF NOT EXISTS one_open_session
        ON sessions(status) WHERE status = 'open'
    """,
    """
    CREATE TABLE IF NOT EXISTS items (
        session_id TEXT NOT NULL REFERENCES sessions(id),
        sku TEXT NOT NULL,
        qty INTEGER NOT NULL CHECK (qty > 0),
        unit_price_cents INTEGER,
        unit_weight_g REAL,
        evidence_id TEXT,
        updated_version INTEGER NOT NULL,
        PRIMARY KEY (session_id, sku)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS prompts (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id),
        question TEXT NOT NULL,
        options TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'answered', 'expired')),
        answer TEXT,
        opened_at REAL NOT NULL,
        expires_at REAL,
        closed_at REAL,
        context TEXT NOT NULL DEFAULT '{}'
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL REFERENCES sessions(id),
        kind TEXT NOT NULL,
        evidence TEXT NOT NULL,
        command_key TEXT NOT NULL,
        raised_at REAL NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS review (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL REFERENCES sessions(id),
        crop_path TEXT NOT NULL,
        weight_g REAL,
        candidates TEXT NOT NULL,
        reason TEXT NOT NULL,
        command_key TEXT NOT NULL,
        queued_at REAL NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS commands (
        key TEXT PRIMARY KEY,
        session_id TEXT,
        kind TEXT NOT NULL,
        applied INTEGER NOT NULL CHECK (applied IN (0, 1)),
        version INTEGER NOT NULL,
        applied_at REAL NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS streams (
        stream TEXT PRIMARY KEY,
        last_seq INTEGER NOT NULL DEFAULT 0,
        acked_seq INTEGER NOT NULL DEFAULT 0,
        dropped INTEGER NOT NULL DEFAULT 0
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS outbox (
        stream TEXT NOT NULL REFERENCES streams(stream),
        seq INTEGER NOT NULL,
        msg_id TEXT NOT NULL UNIQUE,
        command_key TEXT,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (stream, seq)
    ) WITHOUT ROWID
    """,
)


def configure(conn: sqlite3.Connection, *, read_only: bool = False) -> None:
    """Apply the per-connection settings every basket connection must have."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    if not read_only:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"could not switch the basket to WAL (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")


def create(conn: sqlite3.Connection) -> None:
    """Create the tables (idempotent) in one transaction and seed the stream counters."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in DDL:
            conn.execute(statement)
        _migrate(conn)
        conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )
        conn.executemany(
            "INSERT OR IGNORE INTO streams(stream) VALUES (?)", [(s,) for s in STREAMS]
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a basket written by an older cartos up to :data:`SCHEMA_VERSION` in place.

    A cart is updated while a session may be open, so a migration only adds:
    the open session, its items and its prompts carry on.
    """
    columns = {row[1] for row in conn.execute("PRAGMA table_info(prompts)").fetchall()}
    if "context" not in columns:  # version 1
        conn.execute("ALTER TABLE prompts ADD COLUMN context TEXT NOT NULL DEFAULT '{}'")


def integrity_problems(conn: sqlite3.Connection) -> list[str]:
    """Output of ``PRAGMA integrity_check`` and ``foreign_key_check``; empty when healthy."""
    rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall()]
    problems = [] if rows == ["ok"] else rows
    for table, rowid, parent, _fk in conn.execute("PRAGMA foreign_key_check").fetchall():
        problems.append(f"foreign key: {table} row {rowid} points at a missing {parent} row")
    return problems
