"""Errors raised by the backbone refresh."""

from __future__ import annotations

from cartos.errors import CartosError


class RefreshError(CartosError):
    """A refresh could not be run or judged (missing data, unusable test set)."""
