"""Fixtures for the sync tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sync.broker import Broker, find_mosquitto


def require_mosquitto() -> str:
    """The mosquitto executable; skip (or fail under CARTOS_REQUIRE_BROKER=1) when absent."""
    exe = find_mosquitto()
    if exe is None:
        reason = "mosquitto is not installed (apt-get install mosquitto, or set CARTOS_MOSQUITTO)"
        if os.environ.get("CARTOS_REQUIRE_BROKER") == "1":
            pytest.fail(f"CARTOS_REQUIRE_BROKER=1 but {reason}")
        pytest.skip(reason)
    return exe


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A running Mosquitto with persistence in this test's temporary folder."""
    exe = require_mosquitto()
    instance = Broker(tmp_path / "broker", executable=exe)
    try:
        yield instance
    finally:
        instance.close()
