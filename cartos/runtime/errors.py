"""Errors of the cart runtime."""

from __future__ import annotations

from cartos.errors import CartosError


class RuntimeStartError(CartosError):
    """The runtime cannot start: catalogue, model or basket unusable (the service stays down)."""


class PrivacyError(CartosError):
    """An image was about to leave RAM that could show more than the item (a whole frame).

    Raised before the write, never after: the caller drops the image and carries on without it
    (a review item then records that it has no crop).
    """


class InboxError(CartosError):
    """The sensor-event journal cannot be read or written (disk full, corrupt file)."""
