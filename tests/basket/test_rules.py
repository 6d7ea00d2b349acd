"""The basket state machine: quantities, removals, prompts, alerts, sessions."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
)
from cartos.basket.store import BasketStore


def items(store: BasketStore) -> dict[str, int]:
    return {i["sku"]: i["qty"] for i in store.view()["items"]}


def test_adds_merge_per_sku_and_bump_the_version(store: BasketStore) -> None:
    first = store.apply(ItemAdded("a1", "milk", 2, 129, 1030.0, "ev1"))
    second = store.apply(ItemAdded("a2", "milk", 1, evidence_id="ev2"))
    store.apply(ItemAdded("a3", "bread"))
    assert (first.basket_version, second.basket_version) == (2, 3)
    assert items(store) == {"milk": 3, "bread": 1}
    milk = next(i for i in store.view()["items"] if i["sku"] == "milk")
    assert milk["unit_price_cents"] == 129 and milk["unit_weight_g"] == 1030.0
    assert milk["evidence_id"] == "ev2"
    assert store.version == 4


def test_partial_removal_keeps_the_rest(store: BasketStore) -> None:
    store.apply(ItemAdded("a1", "milk", 3))
    result = store.apply(ItemRemoved("r1", "milk", 2))
    assert result.applied and result.alerts == ()
    assert items(store) == {"milk": 1}
    store.apply(ItemRemoved("r2", "milk", 1))
    assert items(store) == {}


def test_removing_more_than_present_removes_what_is_there_and_alerts(store: BasketStore) -> None:
    store.apply(ItemAdded("a1", "milk", 1))
    result = store.apply(ItemRemoved("r1", "milk", 3, evidence_id="ev9"))
    assert result.applied and result.alerts == ("removed_never_added",)
    assert items(store) == {}
    (alert,) = store.view()["alerts"]
    assert alert["kind"] == "removed_never_added"
    assert alert["evidence"] == {"sku": "milk", "requested": 3, "present": 1, "evidence_id": "ev9"}
    never = store.apply(ItemRemoved("r2", "cheese"))
    assert never.alerts == ("removed_never_added",)
    assert len(store.view()["alerts"]) == 2


def test_quantity_changed_sets_absolute_counts(store: BasketStore) -> None:
    store.apply(ItemAdded("a1", "milk", 2))
    assert store.apply(QuantityChanged("q1", "milk", 5)).applied
    assert items(store) == {"milk": 5}
    same = store.apply(QuantityChanged("q2", "milk", 5))
    assert not same.applied and not same.duplicate
    assert same.basket_version == store.version == 3
    store.apply(QuantityChanged("q3", "eggs", 2))
    store.apply(QuantityChanged("q4", "milk", 0))
    assert items(store) == {"eggs": 2}


@pytest.mark.parametrize(
    "cmd",
    [
        ItemAdded("bad", "milk", 0),
        ItemAdded("bad", "milk", -1),
        ItemAdded("bad", "milk", True),
        ItemAdded("bad", "", 1),
        ItemAdded("bad", "milk", 1, unit_weight_g=-3.0),
        ItemRemoved("bad", "milk", 0),
        QuantityChanged("bad", "milk", -2),
        AlertRaised("bad", "Not A Kind"),
        AlertRaised("bad", "unscanned", {"x": {1, 2}}),
        PromptOpened("bad", "p", "q?", ()),
        PromptOpened("bad", "p", "q?", ("yes", "yes")),
        ReviewQueued("bad", "", "low margin"),
    ],
)
def test_invalid_commands_change_nothing_and_keep_their_key(
    store: BasketStore, cmd: Command
) -> None:
    before = store.view()
    with pytest.raises(InvalidCommandError):
        store.apply(cmd)
    assert store.view() == before
    assert store.apply(ItemAdded("bad", "milk")).applied  # the key was not consumed
    assert store.check() == []


def test_session_rules(db_path: Path) -> None:
    with BasketStore(db_path) as store:
        assert store.session is None
        with pytest.raises(NoOpenSessionError):
            store.apply(ItemAdded("a0", "milk"))
        store.apply(SessionOpened("o1", "s1"))
        with pytest.raises(SessionStateError):
            store.apply(SessionOpened("o2", "s2"))
        store.apply(ItemAdded("a1", "milk"))
        closed = store.apply(SessionClosed("c1", "checkout"))
        assert closed.basket_version == 3 and store.session is None
        assert store.view()["status"] == "closed"
        with pytest.raises(SessionStateError):
            store.apply(SessionOpened("o3", "s1"))
        store.apply(SessionOpened("o4", "s2"))
        assert store.session == "s2" and store.view()["items"] == []
        assert store.view("s1")["items"][0]["sku"] == "milk"


def test_prompt_lifecycle(store: BasketStore) -> None:
    store.apply(PromptOpened("p1", "ask-1", "Did you add milk?", ("yes", "no"), 99.0))
    (pending,) = store.view()["pending_prompts"]
    assert pending == {
        "id": "ask-1",
        "question": "Did you add milk?",
        "options": ["yes", "no"],
        "opened_at": pending["opened_at"],
        "expires_at": 99.0,
    }
    with pytest.raises(PromptStateError):
        store.apply(PromptOpened("p2", "ask-1", "again?", ("a",)))
    with pytest.raises(PromptStateError):
        store.apply(PromptAnswered("p3", "ask-1", "maybe"))
    with pytest.raises(PromptStateError):
        store.apply(PromptAnswered("p4", "nope", "yes"))
    assert store.apply(PromptAnswered("p5", "ask-1", "no")).applied
    assert store.view()["pending_prompts"] == []
    with pytest.raises(PromptStateError):
        store.apply(PromptAnswered("p6", "ask-1", "yes"))
    late = store.apply(PromptExpired("p7", "ask-1"))
    assert not late.applied and not late.duplicate

    store.apply(PromptOpened("p8", "ask-2", "Weigh again?", ("ok",)))
    assert store.apply(PromptExpired("p9", "ask-2")).applied
    with pytest.raises(PromptStateError):
        store.apply(PromptAnswered("p10", "ask-2", "ok"))

    store.apply(PromptOpened("p11", "ask-3", "Scan it?", ("ok",)))
    closed = store.apply(SessionClosed("c1"))
    assert closed.applied and store.view()["pending_prompts"] == []
    assert store.check() == []


def test_alerts_and_review_are_recorded(store: BasketStore) -> None:
    result = store.apply(AlertRaised("al1", "ticket_switch", {"scanned": "a", "seen": "b"}))
    assert result.alerts == ("ticket_switch",)
    store.apply(ReviewQueued("rv1", "/crops/1.jpg", "low margin", (("a", 0.41), ("b", 0.4)), 8.5))
    view = store.view()
    assert [a["kind"] for a in view["alerts"]] == ["ticket_switch"]
    assert view["alerts"][0]["evidence"] == {"scanned": "a", "seen": "b"}
    assert view["review"] == 1
    (queued,) = store.pending("review")
    assert queued.payload["command"]["candidates"] == [["a", 0.41], ["b", 0.4]]


def test_corrections_go_to_their_own_stream(store: BasketStore) -> None:
    store.apply(ItemAdded("a1", "milk"))
    store.apply(QuantityChanged("q1", "milk", 2, corrects="a1"))
    store.apply(ItemRemoved("r1", "milk", corrects="a1"))
    assert [m.payload["type"] for m in store.pending("events")] == ["SessionOpened", "ItemAdded"]
    corrections = store.pending("corrections")
    assert [m.payload["type"] for m in corrections] == ["QuantityChanged", "ItemRemoved"]
    assert corrections[0].payload["previous_qty"] == 1


_SKUS = st.sampled_from(["a", "b", "c"])
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), _SKUS, st.integers(1, 4)),
        st.tuples(st.just("remove"), _SKUS, st.integers(1, 4)),
        st.tuples(st.just("set"), _SKUS, st.integers(0, 4)),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(ops=_OPS)
def test_quantities_follow_a_simple_model(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, str, int]]
) -> None:
    path = tmp_path_factory.mktemp("prop") / "basket.db"
    model: dict[str, int] = {}
    alerts = applied = 0
    commands: list[Command] = []
    with BasketStore(path) as store:
        store.apply(SessionOpened("open", "s"))
        for n, (op, sku, qty) in enumerate(ops):
            cmd: Command
            if op == "add":
                cmd = ItemAdded(f"k{n}", sku, qty)
                model[sku] = model.get(sku, 0) + qty
            elif op == "remove":
                cmd = ItemRemoved(f"k{n}", sku, qty)
                alerts += qty > model.get(sku, 0)
                model[sku] = max(model.get(sku, 0) - qty, 0)
            else:
                cmd = QuantityChanged(f"k{n}", sku, qty)
                model[sku] = qty
            commands.append(cmd)
            applied += store.apply(cmd).applied
        expected = {sku: qty for sku, qty in model.items() if qty}
        assert {i["sku"]: i["qty"] for i in store.view()["items"]} == expected
        assert len(store.view()["alerts"]) == alerts
        assert store.version == 1 + applied
        before = store.view()
        assert all(store.apply(cmd).duplicate for cmd in commands)
        assert store.view() == before
        assert store.check() == []
    conn = sqlite3.connect(path)
    payloads = [json.loads(p) for (p,) in conn.execute("SELECT payload FROM outbox")]
    conn.close()
    assert len(payloads) == applied + 1
