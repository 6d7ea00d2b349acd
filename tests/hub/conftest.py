"""The hub's tests use the sync tests' real Mosquitto fixture."""

from __future__ import annotations

from tests.sync.conftest import broker

__all__ = ["broker"]
