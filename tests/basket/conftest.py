"""Fixtures for the basket tests: a real basket file in a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cartos.basket.events import SessionOpened
from cartos.basket.store import BasketStore


@pytest.fixture()
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "basket.db"


@pytest.fixture()
def store(db_path: Path) -> Iterator[BasketStore]:
    """A store with session ``s1`` open."""
    with BasketStore(db_path) as basket:
        basket.apply(SessionOpened("open-s1", "s1"))
        yield basket
