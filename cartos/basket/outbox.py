"""The durable outbox: messages for the store hub, written in the basket's own transactions.

A state change and the message announcing it are written by the same
``BEGIN IMMEDIATE`` … ``COMMIT``, so after any crash either both exist or
neither does; the sync layer never has to reconcile the basket with what it
has sent. Rows leave the outbox only through :func:`ack`, which the sync
layer calls after the hub has confirmed its own durable commit, so a message
is delivered at least once and the hub deduplicates by ``msg_id``.

Each stream numbers its messages 1, 2, 3, … with no gaps (the counter lives
in ``streams`` and never goes back, even when acked rows are deleted), so the
hub can detect a missing message by sequence alone.

Bounding policy:

* ``events``, ``corrections`` and ``review`` are never dropped and have no
  row cap. A basket write therefore never waits for the hub: the outbox only
  grows, and the only limit is the disk itself;
* ``telemetry`` is capped (``telemetry_cap`` pending rows); a write beyond the
  cap drops the oldest pending telemetry rows in the same transaction and
  counts them in ``streams.dropped``. Their sequence numbers are consumed, so
  the hub sees the gap and the drop count rather than silently missing data;
* when the disk is full, :class:`cartos.basket.store.BasketStore` sheds every
  pending telemetry row (:func:`shed_telemetry`) and retries the basket write
  once; telemetry writes themselves give up silently on a full disk. So the
  data that can be lost makes room for the data that cannot.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cartos.basket.errors import OutboxError
from cartos.basket.schema import STREAMS

NEVER_DROPPED: tuple[str, ...] = ("events", "corrections", "review")
"""Streams whose messages leave the outbox only by acknowledgement."""

TELEMETRY = "telemetry"
DEFAULT_TELEMETRY_CAP = 1_000
"""Pending telemetry rows kept before the oldest are dropped."""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One pending message as the sync layer publishes it."""

    stream: str
    seq: int
    msg_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Counters of one stream: what was written, acknowledged, dropped and is still pending."""

    stream: str
    last_seq: int
    acked_seq: int
    dropped: int
    pending: int


def require_stream(stream: str) -> None:
    if stream not in STREAMS:
        raise OutboxError(f"unknown outbox stream {stream!r} (known: {', '.join(STREAMS)})")


def append(
    conn: sqlite3.Connection,
    stream: str,
    body: Mapping[str, Any],
    *,
    now: float,
    command_key: str | None = None,
) -> int:
    """Queue ``body`` on ``stream`` inside the caller's open transaction; returns its seq."""
    require_stream(stream)
    row = conn.execute(
        "UPDATE streams SET last_seq = last_seq + 1 WHERE stream = ? RETURNING last_seq",
        (stream,),
    ).fetchone()
    seq = int(row[0])
    msg_id = uuid.uuid4().hex
    payload = {"msg_id": msg_id, "stream": stream, "seq": seq, **body}
    conn.execute(
        "INSERT INTO outbox(stream, seq, msg_id, command_key, payload, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (stream, seq, msg_id, command_key, json.dumps(payload, sort_keys=True), now),
    )
    return seq


def enforce_telemetry_cap(conn: sqlite3.Connection, cap: int) -> int:
    """Drop the oldest pending telemetry rows beyond ``cap``; returns how many were dropped."""
    excess = conn.execute(
        "SELECT seq FROM outbox WHERE stream = ? ORDER BY seq DESC LIMIT -1 OFFSET ?",
        (TELEMETRY, cap),
    ).fetchall()
    if not excess:
        return 0
    newest_dropped = int(excess[0][0])
    return _drop_telemetry_upto(conn, newest_dropped)


def shed_telemetry(conn: sqlite3.Connection) -> int:
    """Drop every pending telemetry row (inside the caller's transaction) to free disk pages."""
    return _drop_telemetry_upto(conn, 2**62)


def _drop_telemetry_upto(conn: sqlite3.Connection, upto_seq: int) -> int:
    dropped = conn.execute(
        "DELETE FROM outbox WHERE stream = ? AND seq <= ?", (TELEMETRY, upto_seq)
    ).rowcount
    if dropped:
        conn.execute(
            "UPDATE streams SET dropped = dropped + ? WHERE stream = ?", (dropped, TELEMETRY)
        )
    return int(dropped)


def pending(conn: sqlite3.Connection, stream: str, limit: int = 100) -> list[OutboxMessage]:
    """The oldest ``limit`` unacknowledged messages of ``stream``, in sequence order."""
    require_stream(stream)
    if limit < 1:
        raise OutboxError(f"limit must be >= 1, got {limit}")
    rows = conn.execute(
        "SELECT seq, msg_id, payload FROM outbox WHERE stream = ? ORDER BY seq LIMIT ?",
        (stream, limit),
    ).fetchall()
    return [OutboxMessage(stream, int(s), str(m), json.loads(p)) for s, m, p in rows]


def ack(conn: sqlite3.Connection, stream: str, upto_seq: int) -> int:
    """Delete ``stream``'s messages up to ``upto_seq`` inside the caller's transaction.

    Acknowledging a sequence number that was never written is a sync-layer bug
    and raises; acknowledging an already acknowledged prefix again is harmless.
    """
    require_stream(stream)
    last_seq, acked_seq = conn.execute(
        "SELECT last_seq, acked_seq FROM streams WHERE stream = ?", (stream,)
    ).fetchone()
    if upto_seq > last_seq:
        raise OutboxError(f"cannot ack {stream} up to {upto_seq}: only {last_seq} written")
    deleted = conn.execute(
        "DELETE FROM outbox WHERE stream = ? AND seq <= ?", (stream, upto_seq)
    ).rowcount
    if upto_seq > acked_seq:
        conn.execute("UPDATE streams SET acked_seq = ? WHERE stream = ?", (upto_seq, stream))
    return int(deleted)


def stats(conn: sqlite3.Connection) -> dict[str, StreamStats]:
    """Counters of every stream, keyed by stream name."""
    counts = dict(conn.execute("SELECT stream, COUNT(*) FROM outbox GROUP BY stream").fetchall())
    result: dict[str, StreamStats] = {}
    for stream, last_seq, acked_seq, dropped in conn.execute(
        "SELECT stream, last_seq, acked_seq, dropped FROM streams ORDER BY stream"
    ):
        result[stream] = StreamStats(
            stream, int(last_seq), int(acked_seq), int(dropped), int(counts.get(stream, 0))
        )
    return result


def sequence_problems(conn: sqlite3.Connection) -> list[str]:
    """Gaps or strays in the outbox: never-dropped streams must hold exactly (acked, last]."""
    problems: list[str] = []
    for stream, info in stats(conn).items():
        seqs = [
            int(r[0])
            for r in conn.execute("SELECT seq FROM outbox WHERE stream = ? ORDER BY seq", (stream,))
        ]
        if any(s <= info.acked_seq or s > info.last_seq for s in seqs):
            problems.append(f"outbox {stream}: seq outside ({info.acked_seq}, {info.last_seq}]")
        if stream in NEVER_DROPPED and seqs != list(range(info.acked_seq + 1, info.last_seq + 1)):
            missing = info.last_seq - info.acked_seq - len(seqs)
            problems.append(f"outbox {stream}: not contiguous ({missing} messages missing)")
        for seq, payload in conn.execute(
            "SELECT seq, payload FROM outbox WHERE stream = ?", (stream,)
        ):
            body = json.loads(payload)
            if body.get("seq") != seq or body.get("stream") != stream:
                problems.append(f"outbox {stream}: row {seq} carries a different seq/stream")
    return problems
