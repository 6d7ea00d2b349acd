"""`cartos basket show` and `check` as a user runs them: real processes, real files."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from cartos.basket.events import AlertRaised, ItemAdded, PromptOpened, ReviewQueued, SessionOpened
from cartos.basket.store import BasketStore

VIEW_SCHEMA = {
    "type": "object",
    "required": ["session", "status", "version", "items", "pending_prompts", "alerts", "review"],
    "additionalProperties": False,
    "properties": {
        "session": {"type": ["string", "null"]},
        "status": {"enum": ["open", "closed", None]},
        "version": {"type": "integer", "minimum": 0},
        "review": {"type": "integer", "minimum": 0},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sku", "qty", "unit_price_cents", "unit_weight_g", "evidence_id"],
                "properties": {
                    "sku": {"type": "string"},
                    "qty": {"type": "integer", "minimum": 1},
                    "unit_price_cents": {"type": ["integer", "null"]},
                    "unit_weight_g": {"type": ["number", "null"]},
                    "evidence_id": {"type": ["string", "null"]},
                },
            },
        },
        "pending_prompts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "question", "options", "opened_at", "expires_at"],
                "properties": {"options": {"type": "array", "items": {"type": "string"}}},
            },
        },
        "alerts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "kind", "evidence", "raised_at"],
                "properties": {"kind": {"type": "string"}, "evidence": {"type": "object"}},
            },
        },
    },
}


def cartos(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cartos", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture()
def filled(db_path: Path) -> Path:
    with BasketStore(db_path) as store:
        store.apply(SessionOpened("o", "s-42"))
        store.apply(ItemAdded("a1", "milk-1l", 2, 129, 1030.0, "ev1"))
        store.apply(ItemAdded("a2", "bread", evidence_id="ev2"))
        store.apply(PromptOpened("p1", "ask-1", "Did you add milk?", ("yes", "no")))
        store.apply(AlertRaised("al1", "weight_mismatch", {"delta_g": 212.5}))
        store.apply(ReviewQueued("rv1", "/crops/1.jpg", "low margin"))
    return db_path


def test_show_json_matches_the_schema(filled: Path) -> None:
    done = cartos("basket", "show", "--db", str(filled), "--json")
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    jsonschema.validate(view, VIEW_SCHEMA)
    assert view["session"] == "s-42" and view["version"] == 6
    assert [(i["sku"], i["qty"]) for i in view["items"]] == [("bread", 1), ("milk-1l", 2)]
    assert [p["id"] for p in view["pending_prompts"]] == ["ask-1"]
    assert view["alerts"][0]["evidence"] == {"delta_g": 212.5}
    assert view["review"] == 1


def test_show_table_and_empty_file(filled: Path, tmp_path: Path) -> None:
    done = cartos("basket", "show", "--db", str(filled))
    assert done.returncode == 0, done.stderr
    assert "session s-42 (open), version 6" in done.stdout
    assert "milk-1l" in done.stdout and "1.29" in done.stdout
    assert "weight_mismatch" in done.stdout and "outbox pending: corrections 0" in done.stdout
    empty = tmp_path / "empty.db"
    BasketStore(empty).close()
    view = json.loads(cartos("basket", "show", "--db", str(empty), "--json").stdout)
    jsonschema.validate(view, VIEW_SCHEMA)
    assert view["session"] is None and view["items"] == []


def test_show_does_not_create_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    done = cartos("basket", "show", "--db", str(missing))
    assert done.returncode == 2
    assert done.stderr.startswith("error: no basket file")
    assert not missing.exists()


def test_check_passes_on_a_healthy_file(filled: Path) -> None:
    done = cartos("basket", "check", "--db", str(filled))
    assert (done.returncode, done.stdout.strip()) == (0, "ok")


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("DELETE FROM outbox WHERE stream = 'events' AND seq = 3", "not contiguous"),
        ("DELETE FROM commands WHERE key = 'a2'", "applied commands in the ledger"),
        ("UPDATE prompts SET status = 'answered', answer = 'maybe'", "not one of its options"),
    ],
)
def test_check_fails_on_a_broken_file(filled: Path, tamper: str, expected: str) -> None:
    conn = sqlite3.connect(filled)
    conn.execute(tamper)
    conn.commit()
    conn.close()
    done = cartos("basket", "check", "--db", str(filled), "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["ok"] is False
    assert any(expected in problem for problem in report["problems"]), report


def test_check_fails_on_a_corrupt_file(filled: Path) -> None:
    with BasketStore(filled) as store:
        store.apply(ItemAdded("a3", "x" * 5000))
    data = bytearray(filled.read_bytes())
    for offset in range(4096 + 16, min(len(data), 4096 * 6), 97):
        data[offset] ^= 0x5A
    filled.write_bytes(bytes(data))
    done = cartos("basket", "check", "--db", str(filled))
    assert done.returncode != 0
    assert done.stderr.strip() and "Traceback" not in done.stderr
