"""Errors raised by the cart's local API.

The kiosk page needs to tell "that question does not exist" (a stale page
after a restart: reload) from "that question is no longer open" (someone
answered first, it expired: show the next one), so unknown prompts get their
own error and HTTP 404, while the basket's own
:class:`~cartos.basket.errors.PromptStateError` means HTTP 409.
"""

from __future__ import annotations

from cartos.errors import CartosError


class ApiError(CartosError):
    """Base class for local API failures."""


class PromptNotFoundError(ApiError):
    """No prompt with that id belongs to the open shopping session."""


class ApiServerError(ApiError):
    """The HTTP server could not bind its socket or did not come up in time."""
