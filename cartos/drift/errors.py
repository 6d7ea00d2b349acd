"""Errors of the drift monitor."""

from __future__ import annotations

from cartos.errors import CartosError


class DriftError(CartosError):
    """Bad monitor settings or an unusable reference window."""
