"""What the hub needs from its message database, and the one place that picks the backend.

The hub's receiving loop (``cartos.hub.service``) only ever commits batches and
reads back high-waters, ids and counters, so any store with that API and the
same guarantees can sit behind it: every message stored once under its id, a
repeat counted rather than stored, each batch committed in one durable
transaction before anything is acknowledged, and the high-water of a cart
stream advanced only over a contiguous run of seqs (``GAP_TOLERANT_STREAMS``
excepted). :class:`~cartos.hub.store.HubStore` (a SQLite file next to the hub)
is the default; :class:`~cartos.hub.store_pg.PostgresHubStore` keeps the same
tables on a PostgreSQL server.

The backend is chosen from the ``database`` setting alone: a
``postgresql://`` or ``postgres://`` URL means PostgreSQL, anything else is a
SQLite file path. The PostgreSQL module is imported only when such a URL is
given, so a hub that stays on SQLite never needs psycopg installed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from cartos.hub.errors import HubStorageError
from cartos.hub.store import HubStore, Received

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
"""URL prefixes that select PostgreSQL (the two spellings libpq accepts)."""


class MessageReader(Protocol):
    """What a consumer of committed messages needs (``Hub.add_consumer``): one cart's
    messages of one stream past its own cursor."""

    def messages(self, stream: str, cart: str, after_seq: int = 0) -> list[Received]: ...


@runtime_checkable
class MessageStore(Protocol):
    """The hub's durable record of uplink messages (see ``cartos.hub.store``)."""

    def commit(self, batch: Iterable[Received]) -> tuple[dict[tuple[str, str], int], int]:
        """Store ``batch`` in one durable transaction, or nothing of it.

        Returns the high-water (what may be acknowledged) of every ``(cart, stream)``
        the batch touched, and how many of its messages were repeats. Any storage
        failure raises :class:`~cartos.hub.errors.HubStorageError` with nothing kept.
        """
        ...

    def high_water(self, cart: str, stream: str) -> int:
        """The highest seq of ``cart``'s ``stream`` that may be acknowledged (0: none)."""
        ...

    def ids(self, stream: str | None = None) -> set[str]:
        """Ids of every stored message, or of one stream's."""
        ...

    def messages(self, stream: str, cart: str, after_seq: int = 0) -> list[Received]:
        """One cart's committed messages of ``stream`` with seq above ``after_seq``, in order."""
        ...

    def redact(self, stream: str, cart: str, upto_seq: int, path: tuple[str, ...]) -> int:
        """Remove one field from committed messages (data minimisation); returns how many."""
        ...

    def carts(self) -> list[str]:
        """Every cart with a stored message, sorted."""
        ...

    def counter(self, name: str) -> int:
        """A named counter (``"duplicates"``); 0 when it was never incremented."""
        ...

    def close(self) -> None:
        """Release the database connection."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None: ...


def is_postgres_url(database: str | Path) -> bool:
    """Whether ``database`` names a PostgreSQL server rather than a SQLite file."""
    return isinstance(database, str) and database.startswith(POSTGRES_SCHEMES)


def open_message_store(database: str | Path) -> MessageStore:
    """Open the store ``database`` names: a PostgreSQL URL or a SQLite file path.

    A URL must arrive as a ``str``: ``Path("postgresql://host/db")`` collapses the
    ``//`` into ``postgresql:/host/db``, which is neither a usable URL nor a file
    anybody meant, so such a path is refused instead of silently becoming a file.
    """
    if is_postgres_url(database):
        # Imported here so that SQLite-only installs never import psycopg.
        from cartos.hub.store_pg import PostgresHubStore

        return PostgresHubStore(str(database))
    if isinstance(database, Path) and str(database).startswith(("postgresql:", "postgres:")):
        raise HubStorageError(
            f"hub database {database} looks like a PostgreSQL URL that went through a "
            "file path (which drops the '//'); pass the URL as a string")
    return HubStore(Path(database))
