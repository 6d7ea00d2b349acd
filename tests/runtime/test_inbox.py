"""The sensor-event journal, and the runtime replaying it after a crash without duplicating."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from cartos.basket.events import ItemAdded, SessionOpened
from cartos.profiles.loader import load_profile
from cartos.runtime.cart import CartRuntime
from cartos.runtime.errors import InboxError
from cartos.runtime.inbox import EventInbox
from cartos.runtime.simulation import SimulatedStore
from cartos.sensors.bridge.events import Scan, Settled


def test_journal_keeps_undecided_events_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "inbox.db"
    inbox = EventInbox(path)
    settled = Settled(3, 100.5, 1234, 512.0, 511.5)
    scan = Scan(4, 101.0, 1300, "4006381333931")
    inbox.journal("w:9:3", settled, 9)
    inbox.journal("s:9:4", scan, 9)
    inbox.journal("w:9:3", settled, 9)  # a resent event: ignored
    inbox.close()
    again = EventInbox(path)
    pending = again.undecided()
    assert [(j.key, j.event, j.boot_id) for j in pending] == [
        ("w:9:3", settled, 9), ("s:9:4", scan, 9)]
    again.decided("w:9:3")
    assert [j.key for j in again.undecided()] == ["s:9:4"]
    assert again.prune(keep_s=0.0) == 1  # decided rows go; undecided ones never
    assert [j.key for j in again.undecided()] == ["s:9:4"]


def test_unreadable_journal_row_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "inbox.db"
    EventInbox(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO inbox(key, event, received_at) VALUES ('w:1:1', '{\"type\": 1}', 0)")
    conn.commit()
    conn.close()
    with pytest.raises(InboxError, match="w:1:1"):
        EventInbox(path).undecided()


def test_journal_that_cannot_be_opened_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "inbox.db").mkdir()  # a directory where the file should be
    with pytest.raises(InboxError, match="cannot be opened"):
        EventInbox(tmp_path / "inbox.db")


def _runtime(sim_store: SimulatedStore, tmp_path: Path) -> CartRuntime:
    runtime = CartRuntime(load_profile("sim"), sim_store.db, tmp_path / "basket.db", tmp_path,
                          port="/dev/null", watch_memory=False)
    runtime.basket.apply(SessionOpened("test:s", "s-1"))
    return runtime


def test_replayed_event_already_in_the_basket_is_not_billed_again(
    sim_store: SimulatedStore, tmp_path: Path
) -> None:
    """Killed after the basket write, before the journal's mark: the replay writes nothing."""
    product = sorted(sim_store.known.values(), key=lambda p: p.sku)[0]
    first = _runtime(sim_store, tmp_path)
    first.inbox.journal("w:7:1", Settled(1, time.monotonic(), 0, product.weight_g,
                                         product.weight_g), 7)
    first.basket.apply(ItemAdded("w:7:1:add", product.sku, 1, unit_weight_g=product.weight_g))
    first.inbox.close()
    first.basket.close()

    second = _runtime(sim_store, tmp_path)
    second._replay_journal()
    assert second.step(now=time.monotonic() + 10) == []
    assert {i["sku"]: i["qty"] for i in second.basket.view()["items"]} == {product.sku: 1}
    assert second.inbox.undecided() == []


def test_replayed_event_not_yet_decided_is_decided_from_weight_and_scan(
    sim_store: SimulatedStore, tmp_path: Path
) -> None:
    product = next(p for p in sorted(sim_store.known.values(), key=lambda p: p.sku)
                   if p.barcode)
    first = _runtime(sim_store, tmp_path)
    t = time.monotonic() + 3600.0  # a clock from before a power cut: later than "now"
    first.inbox.journal("s:7:1", Scan(1, t - 1.0, 0, product.barcode), 7)
    first.inbox.journal("w:7:2", Settled(2, t, 0, product.weight_g, product.weight_g), 7)
    first.inbox.close()
    first.basket.close()

    second = _runtime(sim_store, tmp_path)
    second._replay_journal()
    decisions = second.step()  # due at once: the times were shifted into the past
    assert [(d.event.key, d.decision, d.sku) for d in decisions] == [
        ("w:7:2", "accept", product.sku)]
    assert [s.code for s in decisions[0].event.scans] == [product.barcode]
    assert {i["sku"]: i["qty"] for i in second.basket.view()["items"]} == {product.sku: 1}
    assert second.inbox.undecided() == []
