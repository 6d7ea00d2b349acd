"""The hub's message store behaves the same on SQLite and on PostgreSQL.

Every behaviour test runs against both backends through the ``backend``
fixture. PostgreSQL tests each get a throwaway database on the server named by
``CARTOS_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``,
a URL, used as the administrative connection), dropped afterwards. Without a
reachable server they are skipped, unless ``CARTOS_REQUIRE_POSTGRES=1``.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from cartos.hub.errors import HubStorageError
from cartos.hub.message_store import MessageStore, open_message_store
from cartos.hub.store import HubStore, Received

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CART = "cart-s001-0001"
OTHER = "cart-s001-0002"


def msg(seq: int, stream: str = "events", cart: str = CART, mid: str | None = None,
        body: dict[str, Any] | None = None) -> Received:
    return Received(mid or f"{cart}.{stream}.{seq:06d}", cart, "s001", stream, seq,
                    body if body is not None else {"seq": seq, "text": f"row {seq}"})


# -- PostgreSQL server -------------------------------------------------------------


def _admin_url() -> str:
    return os.environ.get("CARTOS_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _unavailable(reason: str) -> None:
    if os.environ.get("CARTOS_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"CARTOS_REQUIRE_POSTGRES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_admin() -> str:
    """The administrative URL of a reachable server (checked once per session)."""
    from cartos.hub.store_pg import redact

    url = _admin_url()
    try:
        import psycopg
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'cartos[hub-postgres]')")
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        _unavailable(f"PostgreSQL is not reachable at {redact(url)} (set "
                     f"CARTOS_POSTGRES_URL): {str(exc).strip()}")
    return url


@pytest.fixture
def postgres_url(postgres_admin: str) -> Iterator[str]:
    """URL of a fresh database, dropped (with any session still on it) afterwards."""
    import psycopg

    name = f"cartos_test_{uuid.uuid4().hex}"
    with psycopg.connect(postgres_admin, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(postgres_admin)
    yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    with psycopg.connect(postgres_admin, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- the two backends --------------------------------------------------------------


@dataclass
class Backend:
    """One database, as the factory sees it, plus backend-specific test levers."""

    kind: str
    database: str
    opened: list[MessageStore] = field(default_factory=list)
    _refused: str = ""

    def open(self) -> MessageStore:
        store = open_message_store(self.database)
        self.opened.append(store)
        return store

    def _sql(self, *statements: str) -> None:
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.database, isolation_level=None)
            try:
                for s in statements:
                    conn.execute(s)
            finally:
                conn.close()
        else:
            import psycopg

            with psycopg.connect(self.database, autocommit=True) as pg:
                for s in statements:
                    pg.execute(s)

    def refuse(self, table: str, condition: str) -> None:
        """Make the database refuse writes to ``table`` where ``condition`` holds on ``NEW``.

        Stands in for a database that fails half way through a batch (full disk, I/O error).
        """
        if self.kind == "sqlite":
            self._sql(*(f"CREATE TRIGGER refuse_{op.lower()} BEFORE {op} ON {table} "
                        f"WHEN {condition} BEGIN SELECT RAISE(ABORT, 'refused'); END"
                        for op in ("INSERT", "UPDATE")))
        else:
            self._sql(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF {condition} THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$",
                f"CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION refuse()")
        self._refused = table

    def allow(self) -> None:
        if self.kind == "sqlite":
            self._sql("DROP TRIGGER refuse_insert", "DROP TRIGGER refuse_update")
        else:
            self._sql(f"DROP TRIGGER refuse ON {self._refused}", "DROP FUNCTION refuse()")

    @contextmanager
    def other_writer_committing(self, seq: int) -> Iterator[None]:
        """Another hub's transaction storing ``msg(seq)``, open until the block ends.

        It writes the way the store under test does (SQLite: BEGIN IMMEDIATE;
        PostgreSQL: the stream's high_water row locked), then commits.
        """
        m = msg(seq)
        row = (m.id, m.store, m.cart, m.stream, m.seq, "{}", 0.0)
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.database, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO messages VALUES (?,?,?,?,?,?,?)", row)
                conn.execute("UPDATE high_water SET seq = ? WHERE cart = ? AND stream = ?",
                             (seq, m.cart, m.stream))
                yield
                conn.execute("COMMIT")
            finally:
                conn.close()
            return
        import psycopg

        with psycopg.connect(self.database) as pg:
            pg.execute("INSERT INTO messages VALUES (%s,%s,%s,%s,%s,%s,%s)", row)
            pg.execute("SELECT seq FROM high_water WHERE cart = %s AND stream = %s FOR UPDATE",
                       (m.cart, m.stream))
            pg.execute("UPDATE high_water SET seq = %s WHERE cart = %s AND stream = %s",
                       (seq, m.cart, m.stream))
            yield
            pg.commit()

    def rows(self) -> list[tuple[Any, ...]]:
        """Every stored message, straight from the tables (not through the store)."""
        query = "SELECT id, cart, stream, seq, body FROM messages ORDER BY cart, stream, seq"
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.database)
            try:
                return [tuple(r) for r in conn.execute(query)]
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.database) as pg:
            return [tuple(r) for r in pg.execute(query)]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        b = Backend("sqlite", str(tmp_path / "hub.db"))
    else:
        b = Backend("postgres", request.getfixturevalue("postgres_url"))
    yield b
    for store in b.opened:  # before the database is dropped
        store.close()


# -- behaviour, on both backends -----------------------------------------------------


def test_ordered_batch_is_stored_and_acknowledged_up_to_its_end(backend: Backend) -> None:
    store = backend.open()
    batch = [msg(1), msg(2), msg(3), msg(1, "corrections"), msg(2, "corrections"),
             msg(1, cart=OTHER)]
    marks, duplicates = store.commit(batch)
    assert marks == {(CART, "events"): 3, (CART, "corrections"): 2, (OTHER, "events"): 1}
    assert duplicates == 0
    assert store.high_water(CART, "events") == 3
    assert store.high_water(CART, "review") == 0
    assert store.ids() == {m.id for m in batch}
    assert store.ids("corrections") == {msg(1, "corrections").id, msg(2, "corrections").id}
    assert store.counter("duplicates") == 0
    stored = backend.rows()
    assert [(r[0], r[3]) for r in stored if r[1] == CART and r[2] == "events"] == [
        (msg(s).id, s) for s in (1, 2, 3)]
    assert stored[0][4] == '{"seq": 1, "text": "row 1"}'  # canonical JSON, keys sorted


def test_empty_batch_touches_nothing(backend: Backend) -> None:
    store = backend.open()
    assert store.commit([]) == ({}, 0)
    assert store.ids() == set()


def test_repeats_are_counted_not_stored(backend: Backend) -> None:
    store = backend.open()
    store.commit([msg(1), msg(2), msg(3)])
    # A cart's resend after reconnecting: the same ids, then one new message.
    marks, duplicates = store.commit([msg(1), msg(2), msg(3), msg(4)])
    assert (marks, duplicates) == ({(CART, "events"): 4}, 3)
    # The same message twice in one batch is a repeat too.
    marks, duplicates = store.commit([msg(5), msg(5)])
    assert (marks, duplicates) == ({(CART, "events"): 5}, 1)
    assert store.counter("duplicates") == 4
    assert len(backend.rows()) == 5
    assert store.ids() == {msg(s).id for s in range(1, 6)}


def test_a_seq_already_held_under_another_id_is_a_repeat(backend: Backend) -> None:
    """(cart, stream, seq) is stored once whatever the id: the first message stays."""
    store = backend.open()
    store.commit([msg(1, body={"v": "first"})])
    marks, duplicates = store.commit([msg(1, mid="another-id-000001", body={"v": "second"})])
    assert (marks, duplicates) == ({(CART, "events"): 1}, 1)
    assert store.ids() == {msg(1).id}
    assert [r[4] for r in backend.rows()] == ['{"v": "first"}']


def test_messages_read_back_in_seq_order_after_a_cursor(backend: Backend) -> None:
    store = backend.open()
    body = {"label": "sku-7", "nested": {"n": [1, 2.5, None, "ü"]}}
    store.commit([msg(3, "corrections", body=body), msg(1, "corrections"),
                  msg(2, "corrections"), msg(1), msg(1, "corrections", cart=OTHER)])
    got = store.messages("corrections", CART)
    assert [m.seq for m in got] == [1, 2, 3]
    assert got[2] == msg(3, "corrections", body=body)  # every field, body as a dict
    assert [m.seq for m in store.messages("corrections", CART, after_seq=2)] == [3]
    assert store.messages("corrections", CART, after_seq=3) == []
    assert store.messages("review", CART) == []
    assert store.carts() == [CART, OTHER]


def test_a_gap_holds_the_high_water_until_it_is_filled(backend: Backend) -> None:
    store = backend.open()
    marks, _ = store.commit([msg(1), msg(2), msg(4), msg(5)])
    assert marks == {(CART, "events"): 2}
    marks, _ = store.commit([msg(7)])
    assert marks == {(CART, "events"): 2}
    marks, _ = store.commit([msg(3)])
    assert marks == {(CART, "events"): 5}  # stops at the next gap (6)
    marks, _ = store.commit([msg(6)])
    assert marks == {(CART, "events"): 7}
    assert store.high_water(CART, "events") == 7


def test_nothing_is_acknowledged_before_seq_1(backend: Backend) -> None:
    store = backend.open()
    marks, _ = store.commit([msg(2), msg(3)])
    assert marks == {(CART, "events"): 0}
    assert store.ids() == {msg(2).id, msg(3).id}
    assert store.commit([msg(1)])[0] == {(CART, "events"): 3}


def test_telemetry_gaps_are_tolerated(backend: Backend) -> None:
    store = backend.open()
    marks, _ = store.commit([msg(1, "telemetry"), msg(2, "telemetry"), msg(5, "telemetry"),
                             msg(1), msg(3)])
    assert marks == {(CART, "telemetry"): 5, (CART, "events"): 1}
    # A late telemetry row below the mark is stored and never lowers it.
    marks, _ = store.commit([msg(3, "telemetry")])
    assert marks == {(CART, "telemetry"): 5}
    assert len(store.ids("telemetry")) == 4


def test_reopening_keeps_messages_marks_counters_and_gaps(backend: Backend) -> None:
    first = backend.open()
    first.commit([msg(1), msg(2), msg(4), msg(1, "telemetry"), msg(3, "telemetry")])
    first.commit([msg(1)])
    first.close()

    again = backend.open()
    assert isinstance(again, MessageStore)
    assert again.high_water(CART, "events") == 2
    assert again.high_water(CART, "telemetry") == 3
    assert again.counter("duplicates") == 1
    assert again.ids() == {msg(1).id, msg(2).id, msg(4).id, msg(1, "telemetry").id,
                           msg(3, "telemetry").id}
    assert again.commit([msg(2), msg(3)]) == ({(CART, "events"): 4}, 1)
    assert again.counter("duplicates") == 2


def test_context_manager_returns_the_store(backend: Backend) -> None:
    with backend.open() as store:
        assert store.commit([msg(1)]) == ({(CART, "events"): 1}, 0)
    with backend.open() as store:
        assert store.high_water(CART, "events") == 1


@pytest.mark.parametrize(("table", "condition"), [
    ("messages", f"NEW.id = '{msg(3).id}'"),
    # After every message is in and the events high-water has advanced.
    ("high_water", "NEW.stream = 'review'"),
])
def test_a_failing_commit_keeps_nothing_of_the_batch(backend: Backend, table: str,
                                                     condition: str) -> None:
    store = backend.open()
    store.commit([msg(1)])
    backend.refuse(table, condition)
    # A repeat, new rows of two streams, the refused row, one after it.
    batch = [msg(1), msg(2), msg(1, "review"), msg(3), msg(4)]
    with pytest.raises(HubStorageError, match="refused"):
        store.commit(batch)
    assert backend.rows() == [(msg(1).id, CART, "events", 1, '{"seq": 1, "text": "row 1"}')]
    assert store.high_water(CART, "events") == 1
    assert store.high_water(CART, "review") == 0
    assert store.counter("duplicates") == 0
    # The store is usable afterwards: the same batch (as the carts resend it) commits.
    backend.allow()
    assert store.commit(batch) == ({(CART, "events"): 4, (CART, "review"): 1}, 1)
    assert store.counter("duplicates") == 1


def test_a_commit_waits_for_another_writer_of_the_stream(backend: Backend) -> None:
    """What another hub commits meanwhile counts: the high-water never lags or regresses."""
    store = backend.open()
    store.commit([msg(1)])
    result: list[dict[tuple[str, str], int]] = []
    with backend.other_writer_committing(2):
        writer = threading.Thread(target=lambda: result.append(store.commit([msg(3)])[0]))
        writer.start()
        time.sleep(0.5)  # let it run into the other writer's lock
        assert writer.is_alive()
    writer.join(10)
    assert result == [{(CART, "events"): 3}]
    assert store.high_water(CART, "events") == 3


def test_two_writers_of_one_stream_never_lose_the_high_water(backend: Backend) -> None:
    """Two stores on one database (a hub and its twin) committing interleaved seqs."""
    backend.open().close()  # create the tables before the race
    stores = [backend.open(), backend.open()]
    marks: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            for seq in range(1 + k, 101, 2):
                marks[k].append(stores[k].commit([msg(seq)])[0][(CART, "events")])
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert max(marks[0][-1], marks[1][-1]) == 100
    assert stores[0].high_water(CART, "events") == 100
    for seen in marks:
        assert seen == sorted(seen)
    assert len(stores[1].ids()) == 100


def test_a_field_is_redacted_from_one_carts_stream_up_to_a_seq(backend: Backend) -> None:
    store = backend.open()
    def body(seq: int) -> dict[str, Any]:
        return {"command": {"key": f"k{seq}", "exemplar": {"crop_jpeg": "QUJD", "e": 1}}}
    store.commit([msg(1, "review", body=body(1)), msg(2, "review", body=body(2)),
                  msg(3, "review", body=body(3)), msg(1, "review", OTHER, body=body(1))])
    assert store.redact("review", CART, 2, ("command", "exemplar", "crop_jpeg")) == 2
    assert store.redact("review", CART, 2, ("command", "exemplar", "crop_jpeg")) == 0
    mine = {m.seq: m.body["command"]["exemplar"] for m in store.messages("review", CART)}
    assert mine == {1: {"e": 1}, 2: {"e": 1}, 3: {"crop_jpeg": "QUJD", "e": 1}}
    assert store.messages("review", OTHER)[0].body["command"]["exemplar"]["crop_jpeg"] == "QUJD"


def test_factory_picks_the_backend(backend: Backend) -> None:
    store = backend.open()
    if backend.kind == "sqlite":
        assert type(store) is HubStore
        assert type(open_message_store(Path(backend.database))) is HubStore
    else:
        from cartos.hub.store_pg import PostgresHubStore

        assert type(store) is PostgresHubStore
        short = "postgres://" + backend.database.removeprefix("postgresql://")
        with open_message_store(short) as other:
            assert type(other) is PostgresHubStore
            store.commit([msg(1)])
            assert other.ids() == {msg(1).id}  # the very same database


# -- PostgreSQL only ---------------------------------------------------------------


def test_postgres_reconnects_after_the_server_drops_the_connection(postgres_url: str) -> None:
    import psycopg

    from cartos.hub.store_pg import PostgresHubStore

    with PostgresHubStore(postgres_url) as store:
        store.commit([msg(1)])
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()
        assert killed == [(True,)]
        with pytest.raises(HubStorageError):
            store.commit([msg(2)])  # nothing acknowledged: the cart resends it
        assert store.commit([msg(2), msg(3)]) == ({(CART, "events"): 3}, 0)
        assert store.ids() == {msg(1).id, msg(2).id, msg(3).id}


def test_postgres_unreachable_is_a_storage_error_without_the_password() -> None:
    from cartos.hub.store_pg import PostgresHubStore

    pytest.importorskip("psycopg")
    with pytest.raises(HubStorageError, match="cannot be opened") as caught:
        PostgresHubStore("postgresql://hub:s3cret@127.0.0.1:1/hub?connect_timeout=2")
    assert "s3cret" not in str(caught.value)
    assert "hub:***@127.0.0.1:1" in str(caught.value)


def test_missing_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg -> ImportError
    with pytest.raises(HubStorageError, match="hub-postgres"):
        open_message_store("postgresql://postgres@127.0.0.1:5432/postgres")


def test_a_url_passed_as_a_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HubStorageError, match="as a string"):
        open_message_store(Path("postgresql://postgres@127.0.0.1/hub"))
    assert not Path("postgresql:").exists()


@pytest.mark.parametrize("opener", [str, Path])
def test_anything_else_is_a_sqlite_file(tmp_path: Path,
                                        opener: Callable[[str], str | Path]) -> None:
    path = tmp_path / "postgresql.db"
    with open_message_store(opener(str(path))) as store:
        assert type(store) is HubStore
        store.commit([msg(1)])
    assert path.is_file()
