"""The durable basket: one SQLite file the cart runtime drives with commands.

The runtime may be killed at any instant (``kill -9``, brown-out, watchdog)
and must then resume the same shopping session with nothing lost and nothing
applied twice. The store gets there with three rules:

* **one command, one transaction.** :meth:`BasketStore.apply` runs
  ``BEGIN IMMEDIATE`` … ``COMMIT`` by hand (the sqlite3 module's implicit
  transactions are switched off) around: the idempotency-ledger lookup, the
  state change, its outbox messages and the ledger row. ``synchronous=FULL``
  makes ``COMMIT`` return only once the write-ahead log is on disk, so a
  command the runtime has seen succeed is durable;
* **idempotency keys.** A command whose key is already in the ledger is
  answered ``duplicate=True`` and changes nothing, so the runtime's recovery
  is simply "send the last command again";
* **the view follows the disk.** :meth:`BasketStore.view` is re-read from
  the tables after each successful commit and never touched on failure, so a
  disk-full or read-only error cannot leave the screen showing a half-applied
  change.

Storage failures become :class:`~cartos.basket.errors.BasketStorageError`
subclasses. On a full disk the store first drops pending telemetry (the only
data it may lose, see :mod:`cartos.basket.outbox`) and retries the command
once. ``max_bytes`` caps the file size (via ``PRAGMA max_page_count``), so the
basket can be kept from filling a partition that other services share.
"""

from __future__ import annotations

import contextlib
import copy
import json
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from cartos.basket import outbox, rules
from cartos.basket.errors import (
    BasketError,
    BasketFullError,
    BasketNotFoundError,
    BasketReadOnlyError,
    BasketStorageError,
    InvalidCommandError,
)
from cartos.basket.events import AppliedResult, Command, command_type
from cartos.basket.invariants import invariant_problems
from cartos.basket.outbox import DEFAULT_TELEMETRY_CAP, TELEMETRY, OutboxMessage, StreamStats
from cartos.basket.schema import configure, create, integrity_problems
from cartos.basket.view import load_view

T = TypeVar("T")

_SQLITE_FULL = 13
_SQLITE_READONLY = 8


class BasketStore:
    """The basket file: apply commands, read the view, drain the outbox.

    Not thread-safe: one runtime thread owns the store (readers in other
    processes open their own, ideally ``read_only=True``).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        read_only: bool = False,
        telemetry_cap: int = DEFAULT_TELEMETRY_CAP,
        max_bytes: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if telemetry_cap < 1:
            raise ValueError(f"telemetry_cap must be >= 1, got {telemetry_cap}")
        self.path = Path(path)
        self.read_only = read_only
        self.telemetry_cap = telemetry_cap
        self.telemetry_lost_to_full_disk = 0
        """Telemetry writes refused by a full disk (not countable in the file itself)."""
        self._clock = clock
        self._durable: bool | None = None
        try:
            if read_only:
                if not self.path.is_file():
                    raise BasketNotFoundError(f"no basket file at {self.path}")
                uri = self.path.resolve().as_uri() + "?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, isolation_level=None)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(str(self.path), isolation_level=None)
        except sqlite3.Error as exc:
            raise BasketStorageError(f"cannot open basket file {self.path}: {exc}") from exc
        try:
            configure(self._conn, read_only=read_only)
            if not read_only:
                create(self._conn)
                if max_bytes is not None:
                    page_size = int(self._conn.execute("PRAGMA page_size").fetchone()[0])
                    self._conn.execute(f"PRAGMA max_page_count = {max(1, max_bytes // page_size)}")
            self._view = load_view(self._conn)
        except sqlite3.Error as exc:
            self._conn.close()
            raise _storage_error(exc, f"opening {self.path}") from exc

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- reading -----------------------------------------------------------

    @property
    def session(self) -> str | None:
        """The open session's id (resumed as is after a restart), or None."""
        return str(self._view["session"]) if self._view["status"] == "open" else None

    @property
    def version(self) -> int:
        """Version of the session in the view (the number of its applied commands)."""
        return int(self._view["version"])

    def view(self, session_id: str | None = None) -> dict[str, Any]:
        """The committed basket as plain data (see :mod:`cartos.basket.view`).

        Without ``session_id`` this is the cached view of the open (or latest)
        session, a copy the caller may keep or change.
        """
        if session_id is not None:
            return load_view(self._conn, session_id)
        return copy.deepcopy(self._view)

    def has_command(self, key: str) -> bool:
        """Whether a command with idempotency key ``key`` was ever consumed."""
        row = self._conn.execute("SELECT 1 FROM commands WHERE key = ?", (key,)).fetchone()
        return row is not None

    def prompt_context(self, prompt_id: str) -> dict[str, Any] | None:
        """The context a prompt was opened with (see :class:`PromptOpened`), or None."""
        row = self._conn.execute(
            "SELECT context FROM prompts WHERE id = ?", (prompt_id,)
        ).fetchone()
        if row is None:
            return None
        context = json.loads(row[0])
        return context if isinstance(context, dict) else None

    # -- commands ----------------------------------------------------------

    def apply(self, cmd: Command) -> AppliedResult:
        """Apply ``cmd`` exactly once; a replay of its key is a no-op answered ``duplicate``.

        Raises :class:`InvalidCommandError` when the state forbids the command
        and :class:`BasketStorageError` when the disk refuses the write; in
        both cases nothing was written and the view is unchanged.
        """
        try:
            return self._apply_once(cmd)
        except sqlite3.Error as exc:
            if not _is_full(exc) or not self._shed_telemetry_for_room():
                raise _storage_error(exc, f"{command_type(cmd)} {cmd.key!r}") from exc
        try:
            return self._apply_once(cmd)
        except sqlite3.Error as exc:
            raise _storage_error(exc, f"{command_type(cmd)} {cmd.key!r}") from exc

    def _apply_once(self, cmd: Command) -> AppliedResult:
        kind = command_type(cmd)

        def work(conn: sqlite3.Connection) -> AppliedResult:
            known = conn.execute(
                "SELECT kind, version FROM commands WHERE key = ?", (cmd.key,)
            ).fetchone()
            if known is not None:
                if known[0] != kind:
                    raise InvalidCommandError(
                        f"idempotency key {cmd.key!r} was used by a {known[0]}, not a {kind}"
                    )
                return AppliedResult(applied=False, duplicate=True, basket_version=int(known[1]))
            now = self._clock()
            outcome = rules.apply_command(conn, cmd, now=now)
            for stream, body in outcome.messages:
                outbox.append(conn, stream, body, now=now, command_key=cmd.key)
            conn.execute(
                "INSERT INTO commands(key, session_id, kind, applied, version, applied_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (cmd.key, outcome.session_id, kind, int(outcome.changed), outcome.version, now),
            )
            return AppliedResult(
                applied=outcome.changed,
                duplicate=False,
                basket_version=outcome.version,
                alerts=outcome.alerts,
            )

        result = self._write(work, durable=True)
        if not result.duplicate:
            self._view = load_view(self._conn)
        return result

    def _shed_telemetry_for_room(self) -> bool:
        try:
            return self._write(outbox.shed_telemetry, durable=True) > 0
        except sqlite3.Error:
            return False

    # -- outbox ------------------------------------------------------------

    def record_telemetry(self, data: Mapping[str, Any]) -> int | None:
        """Queue a telemetry message; returns its seq, or None if a full disk refused it.

        Telemetry is committed without the full fsync (a power cut may lose
        the last few) and never raises for a full disk: it must not take the
        cart down. Beyond ``telemetry_cap`` pending rows the oldest are dropped.
        """
        try:
            body = {"type": "telemetry", "data": json.loads(json.dumps(dict(data)))}
        except (TypeError, ValueError) as exc:
            raise InvalidCommandError(f"telemetry is not JSON-serialisable: {exc}") from exc

        def work(conn: sqlite3.Connection) -> int:
            now = self._clock()
            seq = outbox.append(conn, TELEMETRY, body | {"at": now}, now=now)
            outbox.enforce_telemetry_cap(conn, self.telemetry_cap)
            return seq

        try:
            return self._write(work, durable=False)
        except sqlite3.Error as exc:
            if _is_full(exc):
                self.telemetry_lost_to_full_disk += 1
                return None
            raise _storage_error(exc, "telemetry") from exc

    def pending(self, stream: str, limit: int = 100) -> list[OutboxMessage]:
        """The oldest ``limit`` unacknowledged messages of ``stream``, in order."""
        return outbox.pending(self._conn, stream, limit)

    def ack(self, stream: str, upto_seq: int) -> int:
        """Delete ``stream``'s messages up to ``upto_seq`` once the hub has them durably."""
        try:
            return self._write(lambda conn: outbox.ack(conn, stream, upto_seq), durable=True)
        except sqlite3.Error as exc:
            raise _storage_error(exc, f"ack {stream} {upto_seq}") from exc

    def outbox_stats(self) -> dict[str, StreamStats]:
        return outbox.stats(self._conn)

    # -- health --------------------------------------------------------------

    def integrity_problems(self) -> list[str]:
        """``PRAGMA integrity_check`` and foreign-key problems; empty when the file is sound."""
        return integrity_problems(self._conn)

    def check(self) -> list[str]:
        """Integrity plus the basket's own invariants (versions, outbox contiguity)."""
        problems = self.integrity_problems()
        return problems or invariant_problems(self._conn)

    # -- transactions --------------------------------------------------------

    def _write(self, work: Callable[[sqlite3.Connection], T], *, durable: bool) -> T:
        conn = self._conn
        if self._durable is not durable:
            conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._durable = durable
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return result


def _is_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF == _SQLITE_FULL
    return "full" in str(exc)


def _storage_error(exc: sqlite3.Error, what: str) -> BasketError:
    code = int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    if code == _SQLITE_FULL:
        return BasketFullError(f"basket storage full, {what} not applied: {exc}")
    if code == _SQLITE_READONLY:
        return BasketReadOnlyError(f"basket file is read-only, {what} not applied: {exc}")
    return BasketStorageError(f"basket storage failed, {what} not applied: {exc}")
