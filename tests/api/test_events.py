"""The UI event fan-out and the StoreView's announcements, over a real basket file."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartos.api.errors import PromptNotFoundError
from cartos.api.events import EventHub, UiEvent
from cartos.api.store_view import StoreView
from cartos.basket.errors import PromptStateError
from cartos.basket.events import ItemAdded, ItemRemoved
from tests.api.conftest import PROMPT_ID, recorded_prompt


def drain(sub_get: object) -> list[UiEvent]:
    events: list[UiEvent] = []
    assert callable(sub_get)
    while (event := sub_get()) is not None:
        events.append(event)
    return events


def test_every_subscriber_gets_each_event_until_it_closes() -> None:
    hub = EventHub()
    first, second = hub.subscribe(), hub.subscribe()
    assert hub.publish({"type": "alert", "data": {"kind": "unscanned"}}) == 2
    second.close()
    assert hub.publish({"type": "health", "data": {"mode": "full"}}) == 1
    assert [e["type"] for e in drain(first.get_nowait)] == ["alert", "health"]
    assert [e["type"] for e in drain(second.get_nowait)] == ["alert"]
    assert hub.subscriber_count == 1


def test_publish_copies_the_data() -> None:
    hub = EventHub()
    with hub.subscribe() as sub:
        data = {"items": [1]}
        hub.publish({"type": "basket", "data": data})
        data["items"].append(2)
        event = sub.get_nowait()
    assert event == {"type": "basket", "data": {"items": [1]}}
    assert hub.subscriber_count == 0


def test_bad_events_are_refused_at_publish() -> None:
    hub = EventHub()
    with pytest.raises(ValueError, match="unknown UI event type"):
        hub.publish({"type": "gossip", "data": {}})
    with pytest.raises(TypeError):
        hub.publish({"type": "alert", "data": {"when": object()}})


@given(count=st.integers(0, 40), maxsize=st.integers(1, 10))
def test_a_slow_subscriber_keeps_the_newest_events(count: int, maxsize: int) -> None:
    hub = EventHub(queue_size=maxsize)
    sub = hub.subscribe()
    for n in range(count):
        hub.publish({"type": "basket", "data": {"version": n}})
    kept = [e["data"]["version"] for e in drain(sub.get_nowait)]
    assert kept == list(range(max(0, count - maxsize), count))
    assert sub.dropped == max(0, count - maxsize)


def test_close_releases_a_blocked_reader() -> None:
    sub = EventHub().subscribe()
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(sub.get(timeout=None)))
    reader.start()
    time.sleep(0.05)
    sub.close()
    reader.join(2)
    assert not reader.is_alive()
    assert got == [None]


def test_applied_commands_announce_basket_prompt_and_alert(cart: StoreView) -> None:
    with cart.subscribe() as sub:
        cart.apply(ItemAdded("add-eggs", "eggs-6", unit_price_cents=299))
        cart.apply(ItemRemoved("rm-tea", "tea-20"))  # never added: an alert
        cart.answer_prompt(PROMPT_ID, "neither")
        events = drain(sub.get_nowait)
    kinds = [e["type"] for e in events]
    assert kinds == ["basket", "basket", "alert", "basket", "prompt"]
    assert "eggs-6" in [i["sku"] for i in events[0]["data"]["items"]]
    assert events[2]["data"]["kind"] == "removed_never_added"
    assert events[4]["data"] == {
        "pending_prompts": [],
        "prompt_id": PROMPT_ID,
        "status": "answered",
        "answer": "neither",
    }


def test_duplicate_commands_announce_nothing(cart: StoreView) -> None:
    with cart.subscribe() as sub:
        result = cart.apply(ItemAdded("add-milk", "milk-1l", qty=2, unit_price_cents=129))
        assert result.duplicate
        assert sub.get_nowait() is None


def test_concurrent_answers_record_exactly_one(cart: StoreView, basket_path: Path) -> None:
    options = ["oat milk", "soy milk", "neither"] * 3

    def try_answer(option: str) -> str:
        try:
            cart.answer_prompt(PROMPT_ID, option)
        except PromptStateError:
            return "conflict"
        return option

    with ThreadPoolExecutor(max_workers=len(options)) as pool:
        outcomes = list(pool.map(try_answer, options))
    winners = [o for o in outcomes if o != "conflict"]
    assert len(winners) == 1
    assert recorded_prompt(basket_path, PROMPT_ID) == ("answered", winners[0])


def test_unknown_prompt_raises_not_found(cart: StoreView) -> None:
    with pytest.raises(PromptNotFoundError):
        cart.answer_prompt("p-missing", "yes")


def test_store_work_runs_on_one_owner_thread(cart: StoreView) -> None:
    owners = {cart.run_on_store(lambda _store: threading.get_ident()) for _ in range(3)}
    with ThreadPoolExecutor(max_workers=3) as pool:
        owners |= set(pool.map(lambda _: cart.run_on_store(lambda s: threading.get_ident()), "ab"))
    assert len(owners) == 1
    assert threading.get_ident() not in owners
