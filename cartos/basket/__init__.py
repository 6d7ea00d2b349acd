"""The durable basket: a SQLite state machine the cart runtime drives with idempotent commands.

See :mod:`cartos.basket.store` for the durability design and
:mod:`cartos.basket.outbox` for what the sync layer drains.
"""

from cartos.basket.events import (
    AlertRaised,
    AppliedResult,
    Command,
    ItemAdded,
    ItemRemoved,
    PromptAnswered,
    PromptExpired,
    PromptOpened,
    QuantityChanged,
    ReviewQueued,
    SessionClosed,
    SessionOpened,
)
from cartos.basket.store import BasketStore

__all__ = [
    "AlertRaised",
    "AppliedResult",
    "BasketStore",
    "Command",
    "ItemAdded",
    "ItemRemoved",
    "PromptAnswered",
    "PromptExpired",
    "PromptOpened",
    "QuantityChanged",
    "ReviewQueued",
    "SessionClosed",
    "SessionOpened",
]
