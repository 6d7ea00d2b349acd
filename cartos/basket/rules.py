"""The basket's state machine: what each command changes, and what it refuses.

Kept apart from the transaction handling in :mod:`cartos.basket.store` so the
rules read as a list of cases. Every function here runs inside a transaction
the store has already opened; it validates first, then writes the basket
tables, and returns the outbox messages the store must write before
``COMMIT``. Raising :class:`~cartos.basket.errors.InvalidCommandError`
makes the store roll back, so a refused command leaves no trace.

Rules worth knowing:

* one open session at a time; item, prompt, alert and review commands need it;
* every command that changes something bumps the session version by one, so
  the version equals the number of applied commands in the session;
* removing more units than the basket holds removes what is there and raises
  a ``removed_never_added`` alert instead of failing (the shelf is right, the
  basket was wrong);
* ``QuantityChanged`` sets an absolute count (0 deletes the line, a SKU not
  yet in the basket is added); setting the count it already has is a no-op;
* a prompt is answered only while open and only with one of its options;
  expiring an answered prompt is a no-op (timeout and tap race), closing the
  session expires its open prompts.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from cartos.basket.errors import (
    InvalidCommandError,
    NoOpenSessionError,
    PromptStateError,
    SessionStateError,
)
from cartos.basket.events import (
    AlertRaised,
    Command,
    ItemAdded,
    ItemRemoved,
    PromptAnswered,
    PromptExpired,
    PromptOpened,
    QuantityChanged,
    ReviewQueued,
    SessionClosed,
    SessionOpened,
    command_fields,
    command_type,
)

_ALERT_KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(slots=True)
class Outcome:
    """What a command did: the resulting version and the messages announcing it."""

    session_id: str | None
    version: int
    changed: bool
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    alerts: tuple[str, ...] = ()


def apply_command(conn: sqlite3.Connection, cmd: Command, *, now: float) -> Outcome:
    """Validate ``cmd`` against the current state and write its effect on the basket tables."""
    _require_key(cmd.key)
    open_row = conn.execute("SELECT id, version FROM sessions WHERE status = 'open'").fetchone()
    if isinstance(cmd, SessionOpened):
        return _open_session(conn, cmd, open_row, now)
    if open_row is None:
        raise NoOpenSessionError(f"{command_type(cmd)} {cmd.key!r}: no shopping session is open")
    session_id, version = str(open_row[0]), int(open_row[1])
    step = _Step(conn, cmd, session_id, version + 1, now)
    if isinstance(cmd, SessionClosed):
        return step.close_session(cmd)
    if isinstance(cmd, ItemAdded):
        return step.add_item(cmd)
    if isinstance(cmd, ItemRemoved):
        return step.remove_item(cmd)
    if isinstance(cmd, QuantityChanged):
        return step.change_quantity(cmd)
    if isinstance(cmd, PromptOpened):
        return step.open_prompt(cmd)
    if isinstance(cmd, PromptAnswered):
        return step.answer_prompt(cmd)
    if isinstance(cmd, PromptExpired):
        return step.expire_prompt(cmd)
    if isinstance(cmd, AlertRaised):
        return step.raise_alert(cmd)
    return step.queue_review(cmd)


def _require_key(key: str) -> None:
    if not isinstance(key, str) or not key or len(key) > 200:
        raise InvalidCommandError(f"idempotency key must be a non-empty string, got {key!r}")


def _require_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidCommandError(f"{name} must be a non-empty string, got {value!r}")


def _require_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidCommandError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _json(name: str, value: object) -> str:
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidCommandError(f"{name} is not JSON-serialisable: {exc}") from exc


def _open_session(
    conn: sqlite3.Connection, cmd: SessionOpened, open_row: Any, now: float
) -> Outcome:
    _require_text("session_id", cmd.session_id)
    if open_row is not None:
        raise SessionStateError(
            f"cannot open session {cmd.session_id!r}: session {open_row[0]!r} is still open"
        )
    if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (cmd.session_id,)).fetchone():
        raise SessionStateError(f"session {cmd.session_id!r} already exists (closed)")
    conn.execute(
        "INSERT INTO sessions(id, status, version, opened_at) VALUES (?, 'open', 1, ?)",
        (cmd.session_id, now),
    )
    body = _body(cmd, cmd.session_id, 1, now)
    return Outcome(cmd.session_id, 1, True, [("events", body)])


def _body(cmd: Command, session_id: str, version: int, now: float) -> dict[str, Any]:
    fields = command_fields(cmd)
    if isinstance(cmd, PromptOpened):
        # The context (the crop's embedding and path) stays on the cart: it is what the
        # runtime needs to act on the answer, not news for the hub, and the events
        # stream carries no image-derived data.
        fields.pop("context", None)
    return {
        "type": command_type(cmd),
        "key": cmd.key,
        "session": session_id,
        "version": version,
        "at": now,
        "command": fields,
    }


@dataclass(slots=True)
class _Step:
    """One command applied to the open session at version ``version``."""

    conn: sqlite3.Connection
    cmd: Command
    session_id: str
    version: int
    now: float

    def _changed(
        self, stream: str = "events", alerts: tuple[str, ...] = (), **extra: Any
    ) -> Outcome:
        self.conn.execute(
            "UPDATE sessions SET version = ? WHERE id = ?", (self.version, self.session_id)
        )
        body = _body(self.cmd, self.session_id, self.version, self.now) | extra
        messages = [(stream, body)]
        return Outcome(self.session_id, self.version, True, messages, alerts)

    def _unchanged(self) -> Outcome:
        return Outcome(self.session_id, self.version - 1, False)

    def _item_stream(self, corrects: str | None) -> str:
        return "events" if corrects is None else "corrections"

    def _qty(self, sku: str) -> int:
        row = self.conn.execute(
            "SELECT qty FROM items WHERE session_id = ? AND sku = ?", (self.session_id, sku)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def _set_qty(self, sku: str, qty: int, evidence_id: str | None) -> None:
        if qty == 0:
            self.conn.execute(
                "DELETE FROM items WHERE session_id = ? AND sku = ?", (self.session_id, sku)
            )
            return
        self.conn.execute(
            "INSERT INTO items(session_id, sku, qty, evidence_id, updated_version) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(session_id, sku) DO UPDATE SET "
            "qty = excluded.qty, evidence_id = coalesce(excluded.evidence_id, evidence_id), "
            "updated_version = excluded.updated_version",
            (self.session_id, sku, qty, evidence_id, self.version),
        )

    def close_session(self, cmd: SessionClosed) -> Outcome:
        _require_text("reason", cmd.reason)
        expired = [
            str(r[0])
            for r in self.conn.execute(
                "UPDATE prompts SET status = 'expired', closed_at = ? "
                "WHERE session_id = ? AND status = 'open' RETURNING id",
                (self.now, self.session_id),
            )
        ]
        self.conn.execute(
            "UPDATE sessions SET status = 'closed', closed_at = ?, close_reason = ? WHERE id = ?",
            (self.now, cmd.reason, self.session_id),
        )
        return self._changed(expired_prompts=sorted(expired))

    def add_item(self, cmd: ItemAdded) -> Outcome:
        _require_text("sku", cmd.sku)
        _require_count("qty", cmd.qty, 1)
        if cmd.unit_price_cents is not None:
            _require_count("unit_price_cents", cmd.unit_price_cents, 0)
        if cmd.unit_weight_g is not None and not cmd.unit_weight_g > 0:
            raise InvalidCommandError(f"unit_weight_g must be > 0, got {cmd.unit_weight_g!r}")
        self.conn.execute(
            "INSERT INTO items(session_id, sku, qty, unit_price_cents, unit_weight_g, "
            "evidence_id, updated_version) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(session_id, sku) DO UPDATE SET qty = qty + excluded.qty, "
            "unit_price_cents = coalesce(excluded.unit_price_cents, unit_price_cents), "
            "unit_weight_g = coalesce(excluded.unit_weight_g, unit_weight_g), "
            "evidence_id = coalesce(excluded.evidence_id, evidence_id), "
            "updated_version = excluded.updated_version",
            (
                self.session_id,
                cmd.sku,
                cmd.qty,
                cmd.unit_price_cents,
                cmd.unit_weight_g,
                cmd.evidence_id,
                self.version,
            ),
        )
        return self._changed(self._item_stream(cmd.corrects))

    def remove_item(self, cmd: ItemRemoved) -> Outcome:
        _require_text("sku", cmd.sku)
        _require_count("qty", cmd.qty, 1)
        present = self._qty(cmd.sku)
        removed = min(present, cmd.qty)
        if removed:
            self._set_qty(cmd.sku, present - removed, cmd.evidence_id)
        alerts: tuple[str, ...] = ()
        if cmd.qty > present:
            evidence = {
                "sku": cmd.sku,
                "requested": cmd.qty,
                "present": present,
                "evidence_id": cmd.evidence_id,
            }
            self._insert_alert("removed_never_added", evidence)
            alerts = ("removed_never_added",)
        return self._changed(
            self._item_stream(cmd.corrects), alerts, removed=removed, raised=list(alerts)
        )

    def change_quantity(self, cmd: QuantityChanged) -> Outcome:
        _require_text("sku", cmd.sku)
        _require_count("qty", cmd.qty, 0)
        before = self._qty(cmd.sku)
        if before == cmd.qty:
            return self._unchanged()
        self._set_qty(cmd.sku, cmd.qty, cmd.evidence_id)
        return self._changed(self._item_stream(cmd.corrects), previous_qty=before)

    def open_prompt(self, cmd: PromptOpened) -> Outcome:
        _require_text("prompt_id", cmd.prompt_id)
        _require_text("question", cmd.question)
        options = list(cmd.options)
        if not options or len(set(options)) != len(options):
            raise PromptStateError(f"prompt {cmd.prompt_id!r} needs distinct options")
        for option in options:
            _require_text("option", option)
        if self.conn.execute("SELECT 1 FROM prompts WHERE id = ?", (cmd.prompt_id,)).fetchone():
            raise PromptStateError(f"prompt {cmd.prompt_id!r} already exists")
        self.conn.execute(
            "INSERT INTO prompts(id, session_id, question, options, status, opened_at, "
            "expires_at, context) VALUES (?, ?, ?, ?, 'open', ?, ?, ?)",
            (
                cmd.prompt_id,
                self.session_id,
                cmd.question,
                json.dumps(options),
                self.now,
                cmd.expires_at,
                json.dumps(dict(cmd.context), sort_keys=True),
            ),
        )
        return self._changed()

    def _prompt(self, prompt_id: str) -> tuple[str, list[str]]:
        row = self.conn.execute(
            "SELECT status, options FROM prompts WHERE id = ? AND session_id = ?",
            (prompt_id, self.session_id),
        ).fetchone()
        if row is None:
            raise PromptStateError(f"no prompt {prompt_id!r} in the open session")
        return str(row[0]), list(json.loads(row[1]))

    def answer_prompt(self, cmd: PromptAnswered) -> Outcome:
        status, options = self._prompt(cmd.prompt_id)
        if status != "open":
            raise PromptStateError(f"prompt {cmd.prompt_id!r} is {status}, cannot answer it")
        if cmd.scanned is not None:
            _require_text("answer", cmd.answer)
        elif cmd.answer not in options:
            raise PromptStateError(
                f"answer {cmd.answer!r} is not an option of prompt {cmd.prompt_id!r}"
            )
        self.conn.execute(
            "UPDATE prompts SET status = 'answered', answer = ?, closed_at = ? WHERE id = ?",
            (cmd.answer, self.now, cmd.prompt_id),
        )
        return self._changed()

    def expire_prompt(self, cmd: PromptExpired) -> Outcome:
        status, _options = self._prompt(cmd.prompt_id)
        if status != "open":
            return self._unchanged()
        self.conn.execute(
            "UPDATE prompts SET status = 'expired', closed_at = ? WHERE id = ?",
            (self.now, cmd.prompt_id),
        )
        return self._changed()

    def _insert_alert(self, kind: str, evidence: object) -> None:
        self.conn.execute(
            "INSERT INTO alerts(session_id, kind, evidence, command_key, raised_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (self.session_id, kind, _json("evidence", evidence), self.cmd.key, self.now),
        )

    def raise_alert(self, cmd: AlertRaised) -> Outcome:
        if not isinstance(cmd.kind, str) or not _ALERT_KIND.match(cmd.kind):
            raise InvalidCommandError(f"alert kind must be a lowercase identifier: {cmd.kind!r}")
        self._insert_alert(cmd.kind, dict(cmd.evidence))
        return self._changed(alerts=(cmd.kind,))

    def queue_review(self, cmd: ReviewQueued) -> Outcome:
        _require_text("crop_path", cmd.crop_path)
        _require_text("reason", cmd.reason)
        candidates = [[str(sku), float(score)] for sku, score in cmd.candidates]
        self.conn.execute(
            "INSERT INTO review(session_id, crop_path, weight_g, candidates, reason, "
            "command_key, queued_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                self.session_id,
                cmd.crop_path,
                cmd.weight_g,
                _json("candidates", candidates),
                cmd.reason,
                cmd.key,
                self.now,
            ),
        )
        return self._changed("review")
