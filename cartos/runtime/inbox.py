"""The sensor-event journal: what the scale and scanner reported, kept until it is decided.

The microcontroller resends an event until the host acknowledges it, and the
host acknowledges on receipt; an item event is then held in memory for its
scan window (about two seconds) before it is decided and the basket written.
A power cut or ``kill -9`` inside that window would lose the item silently:
the board will not send it again and the basket never saw it. So every
settled weight and every scan is journalled here (fsync'd) as the runtime
takes it from the bridge, and marked decided once the basket holds its
outcome. At start-up the undecided ones are replayed: a restarted cart decides
the event it was killed in the middle of, from its weight and scans (the
camera frames lived in RAM and are gone, so it asks rather than guesses).

Replaying cannot duplicate: the decision's basket commands are keyed by the
event, and the runtime skips an event whose item or prompt command the basket
already holds (killed after the basket write, before the journal's mark).

A separate SQLite file from the basket (``inbox.db`` beside it): the journal
is a runtime concern, written at sensor rate, and pruned of decided rows.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cartos.runtime.errors import InboxError
from cartos.sensors.bridge.events import Scan, Settled

KEEP_DECIDED_S = 24 * 3600.0
"""Decided rows are kept a day for diagnosis (what did the scale report?), then pruned."""


@dataclass(frozen=True)
class JournalledEvent:
    """One undecided sensor event as it was received."""

    key: str
    event: Settled | Scan
    boot_id: int | None


def _encode(event: Settled | Scan) -> str:
    if isinstance(event, Settled):
        data: dict[str, Any] = {"type": "settled", "eid": event.eid, "t": event.t,
                                "mcu_clock": event.mcu_clock, "weight_g": event.weight_g,
                                "delta_g": event.delta_g}
    else:
        data = {"type": "scan", "eid": event.eid, "t": event.t, "mcu_clock": event.mcu_clock,
                "code": event.code}
    return json.dumps(data, sort_keys=True)


def _decode(text: str) -> Settled | Scan:
    data = json.loads(text)
    if data["type"] == "settled":
        return Settled(int(data["eid"]), float(data["t"]), int(data["mcu_clock"]),
                       float(data["weight_g"]), float(data["delta_g"]))
    if data["type"] == "scan":
        return Scan(int(data["eid"]), float(data["t"]), int(data["mcu_clock"]), str(data["code"]))
    raise ValueError(f"unknown journalled event type {data['type']!r}")


class EventInbox:
    """Durable journal of sensor events; one writer (the runtime loop)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._conn = sqlite3.connect(str(path), isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS inbox ("
                " key TEXT PRIMARY KEY,"
                " boot_id INTEGER,"
                " event TEXT NOT NULL,"
                " received_at REAL NOT NULL,"
                " decided_at REAL)"
            )
        except sqlite3.Error as exc:
            raise InboxError(f"event journal {path} cannot be opened: {exc}") from exc

    def journal(self, key: str, event: Settled | Scan, boot_id: int | None) -> None:
        """Record ``event`` durably; a key seen before (a resent event) is ignored."""
        try:
            self._conn.execute(
                "INSERT OR IGNORE INTO inbox(key, boot_id, event, received_at) VALUES (?,?,?,?)",
                (key, boot_id, _encode(event), time.time()),
            )
        except sqlite3.Error as exc:
            raise InboxError(f"event {key} not journalled: {exc}") from exc

    def decided(self, *keys: str) -> None:
        """Mark events decided (the basket holds their outcome)."""
        if not keys:
            return
        try:
            self._conn.executemany("UPDATE inbox SET decided_at = ? WHERE key = ?",
                                   [(time.time(), k) for k in keys])
        except sqlite3.Error as exc:
            raise InboxError(f"events {keys} not marked decided: {exc}") from exc

    def undecided(self) -> list[JournalledEvent]:
        """Events received but never decided, oldest first (the replay after a restart)."""
        rows = self._conn.execute(
            "SELECT key, event, boot_id FROM inbox WHERE decided_at IS NULL "
            "ORDER BY received_at, rowid"
        ).fetchall()
        out = []
        for key, text, boot_id in rows:
            try:
                out.append(JournalledEvent(str(key), _decode(str(text)),
                                           None if boot_id is None else int(boot_id)))
            except (ValueError, KeyError, TypeError) as exc:
                raise InboxError(f"journalled event {key} is unreadable: {exc}") from exc
        return out

    def prune(self, keep_s: float = KEEP_DECIDED_S) -> int:
        """Delete decided rows older than ``keep_s``; returns how many."""
        cur = self._conn.execute("DELETE FROM inbox WHERE decided_at IS NOT NULL "
                                 "AND decided_at < ?", (time.time() - keep_s,))
        return int(cur.rowcount)

    def close(self) -> None:
        self._conn.close()
