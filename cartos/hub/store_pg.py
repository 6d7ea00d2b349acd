"""The hub's message record on PostgreSQL: the same tables and rules as ``cartos.hub.store``.

When to pick it. The default SQLite file (``HubStore``) is the right choice for
one hub on one store PC: nothing to run besides the hub, and the store keeps
working while its link to head office is down. PostgreSQL is worth its upkeep
when the records should live on a database server instead:

* several hubs (one per store) report into one database server, so a chain has
  one place holding every store's uplink;
* backups, replication and point-in-time recovery are those of a managed
  database rather than copies of files on store PCs;
* a chain's BI and reporting query the messages where they are, with SQL,
  instead of collecting SQLite files.

What does not change. One row per message id (a repeat is counted in
``counters``, never stored twice: carts resend everything unacknowledged after
every reconnection); a seq already held for a cart stream, under whatever id,
is a repeat too; each batch is one transaction, committed and flushed before
:meth:`PostgresHubStore.commit` returns, because the hub acknowledges to the
carts what the commit reached and a cart deletes what is acknowledged; a
cart stream's high-water moves only over a contiguous run of seqs, except in
``GAP_TOLERANT_STREAMS`` whose gaps are drops the cart counted. Any database
failure rolls the whole batch back and raises :class:`HubStorageError`: the
hub then acknowledges nothing and the carts resend, so a failure costs time,
never messages. If the connection breaks during ``COMMIT`` the outcome is
unknown to the hub; it still acknowledges nothing, and if the batch did land,
the resent messages are counted as repeats.

``body`` is kept as the same canonical JSON text the SQLite store writes (not
``jsonb``), so every payload the SQLite store accepts is accepted here too;
``body::jsonb`` gives reporting the structured form.

psycopg 3 is imported only when a store is opened (install the
``hub-postgres`` extra), so a SQLite-only hub never needs it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit, urlunsplit

from cartos.hub.errors import HubStorageError
from cartos.hub.store import GAP_TOLERANT_STREAMS, Received

if TYPE_CHECKING:
    import psycopg

CONNECT_TIMEOUT_S = 10
"""Seconds to wait for the server when the URL sets no ``connect_timeout`` of its own."""

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS messages (
        id TEXT PRIMARY KEY,
        store TEXT NOT NULL, cart TEXT NOT NULL, stream TEXT NOT NULL,
        seq BIGINT NOT NULL, body TEXT NOT NULL, received_at DOUBLE PRECISION NOT NULL,
        CONSTRAINT messages_by_stream UNIQUE (cart, stream, seq)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS high_water (
        cart TEXT NOT NULL, stream TEXT NOT NULL, seq BIGINT NOT NULL,
        PRIMARY KEY (cart, stream)
    )
    """,
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value BIGINT)",
)

# ON CONFLICT without a target skips a row that collides on the id *or* on
# (cart, stream, seq), exactly like SQLite's INSERT OR IGNORE in HubStore.
_INSERT = ("INSERT INTO messages(id, store, cart, stream, seq, body, received_at) "
           "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING")

# End of the contiguous run of seqs after the current high-water: in seq order the
# k-th row after ``mark`` has seq = mark + k exactly while there is no gap, and
# seq - k only grows after one. The same walk HubStore does in Python, on the server.
_CONTIGUOUS = """
    SELECT MAX(seq) FROM (
        SELECT seq, seq - ROW_NUMBER() OVER (ORDER BY seq) AS offset_
        FROM messages WHERE cart = %(cart)s AND stream = %(stream)s AND seq > %(mark)s
    ) AS following
    WHERE offset_ = %(mark)s
"""


def _import_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise HubStorageError(
            "a postgresql:// hub database needs psycopg 3: install the 'hub-postgres' "
            "extra (pip install 'cartos[hub-postgres]')") from exc


def redact(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***``, for error messages and logs."""
    if "://" not in dsn:  # key=value form: host=... password=...
        return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn)
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparsable database URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{hostinfo}"
    query = "&".join("password=***" if q.lower().startswith("password=") else q
                     for q in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class PostgresHubStore:
    """PostgreSQL: messages by id, contiguous high-water per cart stream (see module doc).

    Several hubs may share one database (cart ids embed the store id, so their
    rows never collide). Two writers of the *same* cart stream (a hub and its
    accidental twin during a failover) are serialised on the stream's
    ``high_water`` row, so a high-water never moves backwards.
    """

    def __init__(self, dsn: str) -> None:
        _import_psycopg()
        self.dsn = dsn
        self._lock = threading.Lock()
        self._closed = False
        self._conn = self._connect()
        try:
            with self._conn.transaction():
                # Two hubs starting together would otherwise race on CREATE TABLE
                # IF NOT EXISTS (a unique violation in the system catalogue).
                self._conn.execute("SELECT pg_advisory_xact_lock(hashtext('cartos.hub.schema'))")
                for statement in _SCHEMA:
                    self._conn.execute(statement)
        except self._errors() as exc:
            self._conn.close()
            raise HubStorageError(
                f"hub database {redact(dsn)} cannot be prepared: {exc}") from exc

    @staticmethod
    def _errors() -> type[psycopg.Error]:
        import psycopg

        return psycopg.Error

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        try:
            options: dict[str, Any] = {}
            if "connect_timeout" not in conninfo_to_dict(self.dsn):
                options["connect_timeout"] = CONNECT_TIMEOUT_S
            # Autocommit outside explicit transaction() blocks: a read is one statement
            # and never leaves the session idle in a transaction.
            conn = psycopg.connect(self.dsn, autocommit=True, **options)
        except psycopg.Error as exc:
            raise HubStorageError(
                f"hub database {redact(self.dsn)} cannot be opened: {exc}") from exc
        # The row lock in _advance only orders writers if every statement sees what
        # was committed before it ran, which is READ COMMITTED whatever the server default.
        conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
        return conn

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        """The open connection; a new one if the server dropped it (restart, failover)."""
        if self._closed:
            raise HubStorageError(f"hub database {redact(self.dsn)} is closed")
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

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
        rows = [(m.id, m.store, m.cart, m.stream, m.seq, json.dumps(m.body, sort_keys=True), now)
                for m in batch]
        touched = sorted({(row[2], row[3]) for row in rows})
        with self._lock:
            try:
                conn = self._connection()
                # transaction() commits on leaving the block and rolls back on an exception.
                with conn.transaction(), conn.cursor() as cur:
                    # A server or role configured with synchronous_commit = off would
                    # acknowledge commits it has not flushed; force the flush for this one.
                    cur.execute("SELECT set_config('synchronous_commit', 'on', true) "
                                "WHERE current_setting('synchronous_commit') = 'off'")
                    inserted = 0
                    if rows:
                        cur.executemany(_INSERT, rows)
                        inserted = cur.rowcount
                    duplicates = len(rows) - inserted
                    marks = {key: self._advance(cur, *key) for key in touched}
                    if duplicates:
                        cur.execute(
                            "INSERT INTO counters(name, value) VALUES ('duplicates', %s) "
                            "ON CONFLICT (name) DO UPDATE "
                            "SET value = counters.value + excluded.value", (duplicates,))
            except self._errors() as exc:
                raise HubStorageError(f"batch not committed: {exc}") from exc
        return marks, duplicates

    @staticmethod
    def _advance(cur: psycopg.Cursor[tuple[Any, ...]], cart: str, stream: str) -> int:
        # Lock the stream's high-water row first (creating it at 0, as HubStore's upsert
        # would), so a concurrent writer of the same stream waits here, and what is read
        # below includes everything it committed. Keys are taken in sorted order.
        cur.execute("INSERT INTO high_water(cart, stream, seq) VALUES (%s, %s, 0) "
                    "ON CONFLICT (cart, stream) DO NOTHING", (cart, stream))
        cur.execute("SELECT seq FROM high_water WHERE cart = %s AND stream = %s FOR UPDATE",
                    (cart, stream))
        row = cur.fetchone()
        mark = int(row[0]) if row else 0
        if stream in GAP_TOLERANT_STREAMS:
            cur.execute("SELECT MAX(seq) FROM messages WHERE cart = %s AND stream = %s",
                        (cart, stream))
            top = cur.fetchone()
            mark = max(mark, int(top[0] or 0) if top else 0)
        else:
            cur.execute(_CONTIGUOUS, {"cart": cart, "stream": stream, "mark": mark})
            end = cur.fetchone()
            if end is not None and end[0] is not None:
                mark = int(end[0])
        cur.execute("UPDATE high_water SET seq = %s WHERE cart = %s AND stream = %s",
                    (mark, cart, stream))
        return mark

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._connection().execute(sql, params).fetchall()
            except self._errors() as exc:
                raise HubStorageError(f"hub database {redact(self.dsn)}: {exc}") from exc

    def high_water(self, cart: str, stream: str) -> int:
        rows = self._query("SELECT seq FROM high_water WHERE cart = %s AND stream = %s",
                           (cart, stream))
        return int(rows[0][0]) if rows else 0

    def ids(self, stream: str | None = None) -> set[str]:
        if stream is None:
            rows = self._query("SELECT id FROM messages")
        else:
            rows = self._query("SELECT id FROM messages WHERE stream = %s", (stream,))
        return {str(r[0]) for r in rows}

    def messages(self, stream: str, cart: str, after_seq: int = 0) -> list[Received]:
        """One cart's committed messages of ``stream`` above ``after_seq``, in seq order:
        what a consumer that keeps its own cursor (the catalogue learner) has not seen."""
        rows = self._query(
            "SELECT id, cart, store, stream, seq, body FROM messages "
            "WHERE stream = %s AND cart = %s AND seq > %s ORDER BY seq",
            (stream, cart, after_seq))
        return [Received(str(i), str(c), str(st), str(sm), int(q), json.loads(b))
                for i, c, st, sm, q, b in rows]

    def redact(self, stream: str, cart: str, upto_seq: int, path: tuple[str, ...]) -> int:
        """Remove the field at ``path`` from ``cart``'s ``stream`` messages up to ``upto_seq``
        (e.g. a review crop, once the review store holds it under its own retention)."""
        pointer = "{" + ",".join(path) + "}"
        with self._lock:
            try:
                conn = self._connection()
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute(
                        "UPDATE messages SET body = (body::jsonb #- %s::text[])::text "
                        "WHERE stream = %s AND cart = %s AND seq <= %s "
                        "AND body::jsonb #> %s::text[] IS NOT NULL",
                        (pointer, stream, cart, upto_seq, pointer))
                    return max(cur.rowcount, 0)
            except self._errors() as exc:
                raise HubStorageError(f"hub database {redact(self.dsn)}: {exc}") from exc

    def carts(self) -> list[str]:
        """Every cart with a stored message, sorted."""
        return [str(r[0]) for r in self._query(
            "SELECT DISTINCT cart FROM messages ORDER BY cart")]

    def counter(self, name: str) -> int:
        rows = self._query("SELECT value FROM counters WHERE name = %s", (name,))
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._conn.close()
