"""The outbox: same transaction as the state, ordering, acks, bounds, full and read-only disks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cartos.basket.errors import (
    BasketFullError,
    BasketReadOnlyError,
    BasketStorageError,
    OutboxError,
)
from cartos.basket.events import ItemAdded, ReviewQueued, SessionOpened
from cartos.basket.store import BasketStore


def _sql(path: Path, statement: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return conn.execute(statement).fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("table", ["outbox", "commands"])
def test_failure_after_the_state_write_leaves_neither(
    store: BasketStore, db_path: Path, table: str
) -> None:
    store.apply(ItemAdded("a1", "milk"))
    # The item row is written first, then the outbox row, then the ledger row: make a
    # later write fail inside the very same transaction.
    _sql(
        db_path,
        f"CREATE TRIGGER inject BEFORE INSERT ON {table} "
        "BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    before = store.view()
    with pytest.raises(BasketStorageError, match="injected failure"):
        store.apply(ItemAdded("a2", "milk", 2))
    assert store.view() == before
    assert _sql(db_path, "SELECT qty FROM items WHERE sku = 'milk'") == [(1,)]
    assert _sql(db_path, "SELECT COUNT(*) FROM outbox WHERE command_key = 'a2'") == [(0,)]
    assert _sql(db_path, "SELECT COUNT(*) FROM commands WHERE key = 'a2'") == [(0,)]
    assert store.check() == []
    _sql(db_path, "DROP TRIGGER inject")
    assert store.apply(ItemAdded("a2", "milk", 2)).applied
    assert store.view()["items"][0]["qty"] == 3


def test_pending_is_ordered_and_ack_deletes_a_prefix(store: BasketStore) -> None:
    for n in range(9):
        store.apply(ItemAdded(f"a{n}", f"sku{n}"))
    events = store.pending("events", limit=100)
    assert [m.seq for m in events] == list(range(1, 11))
    assert [m.payload["key"] for m in events[1:]] == [f"a{n}" for n in range(9)]
    assert len({m.msg_id for m in events}) == 10
    assert all(m.payload["seq"] == m.seq and m.payload["msg_id"] == m.msg_id for m in events)
    assert [m.seq for m in store.pending("events", limit=3)] == [1, 2, 3]

    assert store.ack("events", 4) == 4
    assert [m.seq for m in store.pending("events", limit=3)] == [5, 6, 7]
    assert store.ack("events", 2) == 0  # an old ack again is harmless
    assert store.outbox_stats()["events"].acked_seq == 4
    with pytest.raises(OutboxError):
        store.ack("events", 11)
    with pytest.raises(OutboxError):
        store.pending("gossip")
    store.ack("events", 10)
    store.apply(ItemAdded("late", "x"))
    assert [m.seq for m in store.pending("events")] == [11]  # numbers are never reused
    assert store.check() == []


def test_sequences_survive_reopening(db_path: Path) -> None:
    with BasketStore(db_path) as store:
        store.apply(SessionOpened("o", "s"))
        store.apply(ItemAdded("a", "milk"))
        store.ack("events", 2)
    with BasketStore(db_path) as store:
        store.apply(ItemAdded("b", "milk"))
        assert [m.seq for m in store.pending("events")] == [3]


def test_telemetry_is_capped_oldest_first_but_nothing_else_is(db_path: Path) -> None:
    with BasketStore(db_path, telemetry_cap=5) as store:
        store.apply(SessionOpened("o", "s"))
        seqs = [store.record_telemetry({"n": n}) for n in range(12)]
        for n in range(30):
            store.apply(ItemAdded(f"a{n}", "milk"))
            store.apply(ReviewQueued(f"r{n}", f"/c/{n}.jpg", "low margin"))
        assert seqs == list(range(1, 13))
        telemetry = store.pending("telemetry")
        assert [m.seq for m in telemetry] == [8, 9, 10, 11, 12]
        assert [m.payload["data"]["n"] for m in telemetry] == [7, 8, 9, 10, 11]
        stats = store.outbox_stats()
        assert stats["telemetry"].dropped == 7
        assert stats["events"].pending == 31 and stats["events"].dropped == 0
        assert stats["review"].pending == 30 and stats["review"].dropped == 0
        assert store.check() == []


def _fill(store: BasketStore, prefix: str) -> int:
    """Add distinct items until the file is full; returns how many went in."""
    for n in range(100_000):
        try:
            store.apply(ItemAdded(f"{prefix}{n}", f"{prefix}-sku-{n:06d}-" + "x" * 150))
        except BasketFullError:
            return n
    raise AssertionError("the size cap never filled up")


def test_full_disk_is_a_clear_error_and_nothing_half_applied(db_path: Path) -> None:
    with BasketStore(db_path, max_bytes=96 * 1024) as store:
        store.apply(SessionOpened("o", "s"))
        added = _fill(store, "a")
        assert added > 10
        before = store.view()
        with pytest.raises(BasketFullError, match="storage full"):
            store.apply(ItemAdded("one-more", "y" * 3000))
        assert store.view() == before
        assert store.version == 1 + added
        assert store.check() == []
    with BasketStore(db_path) as reopened:
        assert reopened.view() == before
        assert reopened.outbox_stats()["events"].last_seq == 1 + added


def test_full_disk_sheds_telemetry_before_refusing_a_basket_write(db_path: Path) -> None:
    with BasketStore(db_path, max_bytes=96 * 1024, telemetry_cap=100_000) as store:
        store.apply(SessionOpened("o", "s"))
        written = 0
        while store.record_telemetry({"blob": "t" * 500, "n": written}) is not None:
            written += 1
        assert written > 20 and store.telemetry_lost_to_full_disk == 1
        result = store.apply(ItemAdded("a", "milk"))
        assert result.applied
        stats = store.outbox_stats()
        assert stats["telemetry"].pending == 0
        assert stats["telemetry"].dropped == written
        assert store.check() == []


def test_read_only_file_refuses_writes_cleanly(db_path: Path) -> None:
    with BasketStore(db_path) as store:
        store.apply(SessionOpened("o", "s"))
        store.apply(ItemAdded("a", "milk"))
    with BasketStore(db_path, read_only=True) as reader:
        before = reader.view()
        with pytest.raises(BasketReadOnlyError, match="read-only"):
            reader.apply(ItemAdded("b", "milk"))
        with pytest.raises(BasketReadOnlyError):
            reader.ack("events", 1)
        assert reader.view() == before
        with pytest.raises(BasketReadOnlyError):
            reader.record_telemetry({"x": 1})
