"""The :class:`~cartos.api.view.CartView` over a real basket file.

A :class:`~cartos.basket.store.BasketStore` belongs to one thread (its SQLite
connection refuses to be used from another), but the screen's requests come
from the HTTP server's worker threads while the runtime applies commands
from its own. :class:`StoreView` therefore *owns* the store on a dedicated
thread and runs every store operation there, one at a time: the runtime
calls :meth:`StoreView.apply` (or :meth:`StoreView.run_on_store` for
anything else, such as draining the outbox) instead of touching the store.

Because every change goes through :meth:`StoreView.apply`, the screens are
told about it without the runtime having to remember: an applied command
publishes a ``basket`` event with the new view, prompt commands a ``prompt``
event and any new alert an ``alert`` event. The runtime publishes ``health``
events itself (:meth:`StoreView.publish`) when the operating mode changes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Self, TypeVar

from cartos.api.errors import PromptNotFoundError
from cartos.api.events import EventHub, Subscription
from cartos.basket.errors import NoOpenSessionError
from cartos.basket.events import (
    AppliedResult,
    Command,
    PromptAnswered,
    PromptExpired,
    PromptOpened,
    SessionClosed,
    SessionOpened,
    new_key,
)
from cartos.basket.store import BasketStore

T = TypeVar("T")

HealthSource = Callable[[], Mapping[str, Any]]
"""Returns the cart's current health report (see :mod:`cartos.api.view`)."""

AnswerListener = Callable[[str, str], None]
"""Told ``(prompt_id, answer)`` after a shopper's answer is durable."""

_PROMPT_COMMANDS = (PromptOpened, PromptAnswered, PromptExpired, SessionOpened, SessionClosed)


class StoreView:
    """A basket store owned by one thread, plus the UI event fan-out, as a ``CartView``.

    ``open_store`` is called on the owner thread (e.g.
    ``functools.partial(BasketStore, path, max_bytes=...)``); ``health`` may be
    called from any thread; ``on_answer`` (optional) runs on the HTTP worker
    thread after each answer the screen recorded, so the runtime can act on it.
    """

    def __init__(
        self,
        open_store: Callable[[], BasketStore],
        health: HealthSource,
        *,
        hub: EventHub | None = None,
        on_answer: AnswerListener | None = None,
    ) -> None:
        self.hub = hub if hub is not None else EventHub()
        self._health = health
        self._on_answer = on_answer
        self._owner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="basket-store")
        self._owner_ident = self._owner.submit(threading.get_ident).result()
        try:
            self._store = self._owner.submit(open_store).result()
        except BaseException:
            self._owner.shutdown(wait=True)
            raise
        self._closed = False

    # -- running on the store's thread -----------------------------------------

    def run_on_store(self, work: Callable[[BasketStore], T]) -> T:
        """Run ``work(store)`` on the owner thread and return its result (or raise its error)."""
        if self._closed:
            raise RuntimeError("StoreView is closed")
        if threading.get_ident() == self._owner_ident:
            return work(self._store)
        return self._owner.submit(work, self._store).result()

    def apply(self, cmd: Command) -> AppliedResult:
        """Apply ``cmd`` to the basket, then tell the screens what changed."""

        def work(store: BasketStore) -> tuple[AppliedResult, dict[str, Any], list[dict[str, Any]]]:
            last_alert = max((a["id"] for a in store.view()["alerts"]), default=0)
            result = store.apply(cmd)
            view = store.view()
            new_alerts = [a for a in view["alerts"] if a["id"] > last_alert]
            return result, view, new_alerts

        result, view, new_alerts = self.run_on_store(work)
        if result.applied:
            self._announce(cmd, view, new_alerts)
        return result

    def _announce(
        self, cmd: Command, view: dict[str, Any], new_alerts: list[dict[str, Any]]
    ) -> None:
        self.publish({"type": "basket", "data": view})
        if isinstance(cmd, _PROMPT_COMMANDS):
            change: dict[str, Any] = {"pending_prompts": view["pending_prompts"]}
            if isinstance(cmd, PromptOpened | PromptAnswered | PromptExpired):
                change["prompt_id"] = cmd.prompt_id
                change["status"] = {
                    PromptOpened: "opened",
                    PromptAnswered: "answered",
                    PromptExpired: "expired",
                }[type(cmd)]
            if isinstance(cmd, PromptAnswered):
                change["answer"] = cmd.answer
            self.publish({"type": "prompt", "data": change})
        for alert in new_alerts:
            self.publish({"type": "alert", "data": alert})

    def publish(self, event: Mapping[str, Any]) -> int:
        """Send a UI event to every subscriber (see :meth:`EventHub.publish`)."""
        return self.hub.publish(event)

    def publish_health(self) -> int:
        """Send the current health report to the screens (call when the mode changes)."""
        return self.publish({"type": "health", "data": self.health()})

    # -- CartView ----------------------------------------------------------------

    def basket(self) -> dict[str, Any]:
        return self.run_on_store(lambda store: store.view())

    def health(self) -> dict[str, Any]:
        return dict(self._health())

    def answer_prompt(self, prompt_id: str, answer: str) -> dict[str, Any]:
        def check(store: BasketStore) -> None:
            session = store.session
            if session is None:
                raise NoOpenSessionError("no shopping session is open, nothing to answer")
            if not _prompt_in_session(store, prompt_id, session):
                raise PromptNotFoundError(f"no prompt {prompt_id!r} in the open session")

        self.run_on_store(check)
        # The basket itself refuses closed prompts and foreign answers (PromptStateError).
        result = self.apply(PromptAnswered(key=new_key(), prompt_id=prompt_id, answer=answer))
        if self._on_answer is not None:
            self._on_answer(prompt_id, answer)
        return {"prompt_id": prompt_id, "answer": answer, "basket_version": result.basket_version}

    def subscribe(self) -> Subscription:
        return self.hub.subscribe()

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Close the store on its thread and stop the thread; idempotent."""
        if self._closed:
            return
        self._owner.submit(self._store.close).result()
        self._closed = True
        self._owner.shutdown(wait=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _prompt_in_session(store: BasketStore, prompt_id: str, session_id: str) -> bool:
    """Whether the session ever had ``prompt_id`` (open, answered or expired).

    The basket view lists only open prompts, so a closed one is looked up in
    the file through a separate read-only connection (the basket uses WAL, so
    this never blocks the writer).
    """
    if any(p["id"] == prompt_id for p in store.view()["pending_prompts"]):
        return True
    uri = store.path.resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        row = conn.execute(
            "SELECT 1 FROM prompts WHERE id = ? AND session_id = ?", (prompt_id, session_id)
        ).fetchone()
    finally:
        conn.close()
    return row is not None
