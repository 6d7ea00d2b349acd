"""Fixtures for the API tests: a real basket file with an open session, an item and a prompt."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cartos.api.app import create_app
from cartos.api.store_view import StoreView
from cartos.basket.events import ItemAdded, PromptOpened, SessionOpened
from cartos.basket.store import BasketStore
from cartos.telemetry.metrics import Metrics

PROMPT_ID = "p-oat"
PROMPT_OPTIONS = ("oat milk", "soy milk", "neither")


@dataclass
class HealthBoard:
    """The cart's health as the runtime would report it; tests change it in place."""

    mode: str = "full"
    sensors: dict[str, bool] = field(
        default_factory=lambda: {"camera": True, "scale": True, "scanner": True}
    )
    headroom: float = 0.42

    def report(self) -> dict[str, Any]:
        return {"mode": self.mode, "sensors": dict(self.sensors), "headroom": self.headroom}


@pytest.fixture()
def basket_path(tmp_path: Path) -> Path:
    return tmp_path / "basket.db"


@pytest.fixture()
def health_board() -> HealthBoard:
    return HealthBoard()


@pytest.fixture()
def answers() -> list[tuple[str, str]]:
    """What the runtime was told about answered prompts."""
    return []


@pytest.fixture()
def cart(
    basket_path: Path, health_board: HealthBoard, answers: list[tuple[str, str]]
) -> Iterator[StoreView]:
    """A StoreView over a basket with session s1, one item and one open prompt."""
    view = StoreView(
        functools.partial(BasketStore, basket_path),
        health_board.report,
        on_answer=lambda prompt_id, answer: answers.append((prompt_id, answer)),
    )
    view.apply(SessionOpened("open-s1", "s1"))
    view.apply(ItemAdded("add-milk", "milk-1l", qty=2, unit_price_cents=129, unit_weight_g=1030.0))
    view.apply(PromptOpened("ask-oat", PROMPT_ID, "Which milk did you add?", PROMPT_OPTIONS))
    yield view
    view.close()


@pytest.fixture()
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture()
def client(cart: StoreView, metrics: Metrics) -> Iterator[TestClient]:
    with TestClient(create_app(cart, metrics=metrics)) as test_client:
        yield test_client


def recorded_prompt(path: Path, prompt_id: str) -> tuple[str, str | None]:
    """(status, answer) of a prompt as written in the basket file, read independently."""
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT status, answer FROM prompts WHERE id = ?", (prompt_id,)
        ).fetchone()
    finally:
        conn.close()
    assert row is not None, f"prompt {prompt_id} is not in {path}"
    return str(row[0]), row[1]


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """(event name, decoded data) for each complete message in an SSE text; comments skipped."""
    events: list[tuple[str, Any]] = []
    for block in text.split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:") :].strip())
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events
