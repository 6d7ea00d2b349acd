"""Errors raised by the basket package.

The cart runtime drives the basket with commands; it has to tell three kinds
of failure apart because it reacts differently to each:

* a command that is wrong for the current state (remove from a closed
  session, answer an expired prompt): a bug or race upstream, the command is
  dropped and nothing was written;
* storage that cannot take the write (disk full, read-only file): the basket
  is unchanged, the runtime must alert staff and may retry later;
* a file that is not a healthy basket database: refuse to start on it.
"""

from __future__ import annotations

from cartos.errors import CartosError


class BasketError(CartosError):
    """Base class for basket failures."""


class InvalidCommandError(BasketError):
    """A command is malformed (bad quantity, empty options) or forbidden by the current state.

    Nothing was written and the idempotency key was not consumed, so replaying
    the same command raises the same error again.
    """


class NoOpenSessionError(InvalidCommandError):
    """A basket command arrived while no shopping session is open."""


class SessionStateError(InvalidCommandError):
    """A session command conflicts with the sessions on file (second open, close of a stranger)."""


class PromptStateError(InvalidCommandError):
    """A prompt is unknown, already answered or expired, or the answer is not one of its options."""


class BasketStorageError(BasketError):
    """SQLite could not complete a write; the transaction was rolled back in full."""


class BasketFullError(BasketStorageError):
    """The disk (or the file's page limit) is full even after shedding telemetry."""


class BasketReadOnlyError(BasketStorageError):
    """The basket file was opened read-only, or the file system refuses writes."""


class BasketNotFoundError(BasketError):
    """A read-only tool was pointed at a basket file that does not exist."""


class OutboxError(BasketError):
    """The sync layer asked the impossible: an unknown stream, or an ack of the future."""
