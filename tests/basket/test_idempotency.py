"""Replays are no-ops, and an open session is resumed after the file is reopened."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cartos.basket.errors import InvalidCommandError
from cartos.basket.events import (
    AlertRaised,
    ItemAdded,
    ItemRemoved,
    PromptOpened,
    SessionClosed,
    SessionOpened,
    sensor_key,
)
from cartos.basket.soak import build_script, fingerprint
from cartos.basket.store import BasketStore


def test_replay_is_a_duplicate_with_the_original_version(store: BasketStore) -> None:
    cmd = ItemAdded(sensor_key("boot7", 41), "milk", 2)
    first = store.apply(cmd)
    store.apply(ItemAdded(sensor_key("boot7", 42), "bread"))
    again = store.apply(cmd)
    assert first.applied and not first.duplicate
    assert again == type(again)(applied=False, duplicate=True, basket_version=first.basket_version)
    assert {i["sku"]: i["qty"] for i in store.view()["items"]} == {"milk": 2, "bread": 1}
    assert len(store.pending("events")) == 3


def test_replay_of_an_alerting_removal_does_not_alert_twice(store: BasketStore) -> None:
    cmd = ItemRemoved("r1", "ghost")
    assert store.apply(cmd).alerts == ("removed_never_added",)
    assert store.apply(cmd).duplicate
    assert len(store.view()["alerts"]) == 1


def test_a_key_reused_by_another_command_type_is_refused(store: BasketStore) -> None:
    store.apply(ItemAdded("k", "milk"))
    with pytest.raises(InvalidCommandError, match="was used by a ItemAdded"):
        store.apply(AlertRaised("k", "unscanned"))


def test_replay_after_session_closed_and_reopened(db_path: Path) -> None:
    with BasketStore(db_path) as store:
        store.apply(SessionOpened("o1", "s1"))
        store.apply(ItemAdded("a1", "milk"))
        store.apply(SessionClosed("c1"))
    with BasketStore(db_path) as store:
        store.apply(SessionOpened("o2", "s2"))
        assert store.apply(ItemAdded("a1", "milk")).duplicate
        assert store.apply(SessionClosed("c1")).duplicate
        assert store.session == "s2" and store.view()["items"] == []


def test_open_session_resumes_after_reopening(db_path: Path) -> None:
    with BasketStore(db_path) as store:
        store.apply(SessionOpened("o1", "s1"))
        store.apply(ItemAdded("a1", "milk", 2, 129))
        store.apply(PromptOpened("p1", "ask", "Milk?", ("yes", "no")))
        before = store.view()
    with BasketStore(db_path) as store:
        assert store.session == "s1"
        assert store.view() == before
        assert store.apply(ItemAdded("a2", "milk")).basket_version == before["version"] + 1
        assert store.view()["items"][0]["qty"] == 3


def test_resume_after_the_writer_dies_without_closing(db_path: Path) -> None:
    """A writer process that exits hard (no close, no checkpoint) leaves a usable WAL."""
    code = (
        "import os, sys\n"
        "from cartos.basket.events import SessionOpened, ItemAdded\n"
        "from cartos.basket.store import BasketStore\n"
        "s = BasketStore(sys.argv[1])\n"
        "s.apply(SessionOpened('o', 'crash'))\n"
        "for n in range(20): s.apply(ItemAdded(f'a{n}', f'sku{n % 3}'))\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(db_path)], check=True, timeout=60)
    assert Path(f"{db_path}-wal").exists()
    with BasketStore(db_path) as store:
        assert store.session == "crash" and store.version == 21
        assert sum(i["qty"] for i in store.view()["items"]) == 20
        assert store.check() == []


def test_soak_script_expectations_match_the_store(db_path: Path) -> None:
    """The soak's independent model and the store agree step by step (no kills here)."""
    script = build_script(seed=3, length=400)
    kinds = {type(c).__name__ for c in script.commands}
    assert len(kinds) >= 9
    with BasketStore(db_path) as store:
        for cmd, expected in zip(script.commands, script.expected, strict=True):
            assert store.apply(cmd).applied
            assert fingerprint(store.view()) == expected
        assert store.check() == []
