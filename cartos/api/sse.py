"""Server-sent events: the kiosk page's live feed of basket, prompt, alert and health events.

SSE rather than WebSockets because the feed is one-way (answers go through
a plain POST), the browser's ``EventSource`` reconnects by itself, and it
needs no extra server dependency. Three details matter on a cart:

* a comment line every ``heartbeat_s`` seconds (15 s by default) keeps idle
  connections from being timed out and lets either side notice a dead peer;
* the stream waits on an ``asyncio.Event`` woken from the publisher's
  thread, so an idle screen holds no worker thread and no polling loop;
* streams end when the server shuts down (:meth:`StreamTracker.close_all`),
  otherwise uvicorn would wait for them until its graceful-shutdown timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterable
from typing import Final

from cartos.api.events import Subscription, UiEvent

DEFAULT_HEARTBEAT_S: Final = 15.0
"""Seconds between keep-alive comments on an idle stream."""

RECONNECT_MS: Final = 2000
"""How long the browser waits before reconnecting a dropped stream (SSE ``retry:``)."""


def format_event(event: UiEvent) -> str:
    """One SSE message: ``event:`` is the UI event type, ``data:`` its JSON payload."""
    payload = json.dumps(event["data"], ensure_ascii=False, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {payload}\n\n"


HEARTBEAT: Final = ": heartbeat\n\n"


class StreamTracker:
    """The subscriptions behind open streams, so shutdown can end them all at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[Subscription] = set()
        self._closing = False

    @property
    def closing(self) -> bool:
        return self._closing

    def track(self, sub: Subscription) -> bool:
        """Register ``sub``; False (and ``sub`` closed) once shutdown has begun."""
        with self._lock:
            if not self._closing:
                self._open.add(sub)
                return True
        sub.close()
        return False

    def release(self, sub: Subscription) -> None:
        with self._lock:
            self._open.discard(sub)
        sub.close()

    @property
    def open_count(self) -> int:
        with self._lock:
            return len(self._open)

    def close_all(self) -> None:
        with self._lock:
            self._closing = True
            targets = list(self._open)
        for sub in targets:
            sub.close()


async def event_stream(
    sub: Subscription,
    tracker: StreamTracker,
    *,
    initial: Iterable[UiEvent] = (),
    heartbeat_s: float = DEFAULT_HEARTBEAT_S,
) -> AsyncIterator[str]:
    """Yield SSE text for ``initial`` and then every event ``sub`` receives, until closed."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def wake_from_any_thread() -> None:
        # The loop is gone once the server has stopped; nobody is waiting then.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(wake.set)

    sub.set_wakeup(wake_from_any_thread)
    try:
        yield f"retry: {RECONNECT_MS}\n\n"
        for first in initial:
            yield format_event(first)
        last_sent = loop.time()
        while not sub.closed:
            wake.clear()
            event = sub.get_nowait()
            if event is not None:
                yield format_event(event)
                last_sent = loop.time()
                continue
            remaining = heartbeat_s - (loop.time() - last_sent)
            if remaining <= 0:
                yield HEARTBEAT
                last_sent = loop.time()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), remaining)
    finally:
        sub.set_wakeup(None)
        tracker.release(sub)
