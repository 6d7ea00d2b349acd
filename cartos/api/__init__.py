"""The cart's local HTTP API and kiosk page, served on localhost to the cart's own screen.

The screen is a browser in kiosk mode pointed at ``http://127.0.0.1:8420/``.
It reads the basket and the cart's health, answers the shopper's prompts and
follows live updates over server-sent events; ``/metrics`` exposes the
cart's Prometheus metrics. The server talks to the runtime only through the
:class:`~cartos.api.view.CartView` protocol; :class:`~cartos.api.store_view.StoreView`
implements it over the basket file. See ``docs/api.md``.
"""

from cartos.api.app import create_app
from cartos.api.errors import ApiError, ApiServerError, PromptNotFoundError
from cartos.api.events import EventHub, Subscription, UiEvent
from cartos.api.server import ApiServer
from cartos.api.store_view import StoreView
from cartos.api.view import CartView

__all__ = [
    "ApiError",
    "ApiServer",
    "ApiServerError",
    "CartView",
    "EventHub",
    "PromptNotFoundError",
    "StoreView",
    "Subscription",
    "UiEvent",
    "create_app",
]
