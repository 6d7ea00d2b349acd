"""Errors of the cart runtime."""

from __future__ import annotations

from cartos.errors import CartosError


class RuntimeStartError(CartosError):
    """The runtime cannot start: catalogue, model or basket unusable (the service stays down)."""
