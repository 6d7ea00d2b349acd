"""Errors of the store hub."""

from __future__ import annotations

from cartos.errors import CartosError


class HubError(CartosError):
    """Base of the hub's errors."""


class HubStorageError(HubError):
    """The hub's database refused a write (full disk, read-only, corrupt)."""
