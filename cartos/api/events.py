"""Live UI events: a thread-safe fan-out from the cart runtime to every open screen.

The runtime changes the basket on its own thread; the kiosk page listens on
a server-sent-events stream served from the API's event loop. An
:class:`EventHub` connects the two without either waiting on the other:
:meth:`EventHub.publish` copies the event into one bounded queue per
:class:`Subscription` and returns at once.

A subscriber that stops reading must not grow memory without bound on a cart
with a fixed RAM budget, so each queue is bounded and drops its *oldest*
event when full (counted in :attr:`Subscription.dropped`). That is safe for
the screen because ``basket`` events carry the whole basket view: the newest
one supersedes everything dropped before it.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Final, Literal, Self, TypedDict

UiEventType = Literal["basket", "prompt", "alert", "health"]

UI_EVENT_TYPES: Final[tuple[UiEventType, ...]] = ("basket", "prompt", "alert", "health")
"""What a screen can be told: the basket view, prompt changes, a new alert, cart health."""

DEFAULT_QUEUE_SIZE: Final = 256
"""Events buffered per subscriber before the oldest are dropped."""


class UiEvent(TypedDict):
    """One event for the screen: ``{"type": "basket", "data": {...}}``."""

    type: UiEventType
    data: dict[str, Any]


def ui_event(kind: str, data: Mapping[str, Any]) -> UiEvent:
    """A validated, JSON-safe copy of an event (raises ValueError/TypeError otherwise).

    The copy is made once at publish time, so a publisher may keep mutating
    its own dict and every subscriber sees the same immutable-by-convention data.
    """
    if kind not in UI_EVENT_TYPES:
        raise ValueError(f"unknown UI event type {kind!r}; expected one of {UI_EVENT_TYPES}")
    safe = json.loads(json.dumps(dict(data)))
    return {"type": kind, "data": safe}


class Subscription:
    """One listener's queue of UI events; close it (or use ``with``) to unsubscribe."""

    def __init__(self, hub: EventHub, maxsize: int = DEFAULT_QUEUE_SIZE) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self._hub = hub
        self._events: deque[UiEvent] = deque()
        self._maxsize = maxsize
        self._ready = threading.Condition()
        self._wakeup: Callable[[], None] | None = None
        self._closed = False
        self.dropped = 0
        """Events discarded because this subscriber fell ``maxsize`` events behind."""

    @property
    def closed(self) -> bool:
        return self._closed

    def set_wakeup(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` (from the publisher's thread) after each delivery and on close.

        Lets an asyncio consumer wait on an ``asyncio.Event`` set through
        ``loop.call_soon_threadsafe`` instead of blocking a worker thread.
        """
        with self._ready:
            self._wakeup = callback

    def deliver(self, event: UiEvent) -> None:
        """Queue ``event`` (dropping the oldest if full); a no-op once closed."""
        with self._ready:
            if self._closed:
                return
            if len(self._events) >= self._maxsize:
                self._events.popleft()
                self.dropped += 1
            self._events.append(event)
            self._ready.notify_all()
            wakeup = self._wakeup
        if wakeup is not None:
            wakeup()

    def get(self, timeout: float | None = None) -> UiEvent | None:
        """The next event, waiting up to ``timeout`` seconds (None: until one comes or close).

        Returns None on timeout and once the subscription is closed and drained.
        """
        with self._ready:
            self._ready.wait_for(lambda: self._events or self._closed, timeout)
            return self._events.popleft() if self._events else None

    def get_nowait(self) -> UiEvent | None:
        """The next queued event, or None at once if there is none."""
        with self._ready:
            return self._events.popleft() if self._events else None

    def close(self) -> None:
        """Unsubscribe; later events are not delivered and waiting readers return. Idempotent."""
        with self._ready:
            if self._closed:
                return
            self._closed = True
            self._ready.notify_all()
            wakeup = self._wakeup
        self._hub.unsubscribe(self)
        if wakeup is not None:
            wakeup()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventHub:
    """Fan-out of UI events to every current :class:`Subscription`; thread-safe."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._queue_size = queue_size
        self._lock = threading.Lock()
        self._subscribers: set[Subscription] = set()

    def subscribe(self) -> Subscription:
        sub = Subscription(self, self._queue_size)
        with self._lock:
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def publish(self, event: Mapping[str, Any]) -> int:
        """Send ``{"type", "data"}`` to every subscriber; returns how many received it."""
        checked = ui_event(str(event.get("type")), event.get("data") or {})
        with self._lock:
            targets = list(self._subscribers)
        for sub in targets:
            sub.deliver(checked)
        return len(targets)

    def close_all(self) -> None:
        """Close every subscription (server shutdown): their streams end promptly."""
        with self._lock:
            targets = list(self._subscribers)
        for sub in targets:
            sub.close()
