"""What the local API needs from the cart runtime: the :class:`CartView` protocol.

The HTTP layer never touches the basket file, the sensors or the recogniser
directly; it talks to one object with four methods. That keeps the server
testable over a real basket without the rest of the runtime, and lets the
runtime decide how (and on which thread) the basket is read and changed.
:class:`cartos.api.store_view.StoreView` is the implementation over a
:class:`~cartos.basket.store.BasketStore`.

Contract of the dicts:

* ``basket()`` is the basket view of :mod:`cartos.basket.view`;
* ``health()`` is ``{"mode": one of OPERATING_MODES, "sensors": {name: bool},
  "headroom": fraction of the memory budget still free, or None}``; further
  keys are passed through to the screen;
* ``answer_prompt()`` returns ``{"prompt_id", "answer", "basket_version"}``
  once the answer is durable, raises
  :class:`~cartos.api.errors.PromptNotFoundError` for a prompt the open
  session does not have and the basket's
  :class:`~cartos.basket.errors.PromptStateError` (or another
  :class:`~cartos.basket.errors.InvalidCommandError`) when it cannot be
  answered now;
* ``subscribe()`` returns a :class:`~cartos.api.events.Subscription` of UI
  events ``{"type": "basket"|"prompt"|"alert"|"health", "data": {...}}``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from cartos.api.events import Subscription


@runtime_checkable
class CartView(Protocol):
    """The cart as the screen sees it; every method may be called from any thread."""

    def basket(self) -> dict[str, Any]:
        """The committed basket view (see :mod:`cartos.basket.view`)."""
        ...

    def health(self) -> dict[str, Any]:
        """Operating mode, per-sensor health and memory headroom."""
        ...

    def answer_prompt(self, prompt_id: str, answer: str) -> dict[str, Any]:
        """Record the shopper's answer durably, then tell the runtime and the screens."""
        ...

    def subscribe(self) -> Subscription:
        """A new stream of UI events; the caller closes it."""
        ...
