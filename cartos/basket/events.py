"""The typed commands the cart runtime applies to the basket.

Every command carries an idempotency key chosen by whoever produced it: the
sensor event's ``(boot_id, eid)`` for things the cart saw, a UUID for things a
person did. After a crash the runtime cannot know whether its last command was
committed, so it simply sends it again; the store recognises the key and
answers ``duplicate=True`` without touching the basket. That is what makes
"nothing lost, nothing applied twice" a property of the file rather than of
careful bookkeeping in the runtime.

Item commands may name the key of an earlier command they correct
(``corrects``); those go to the ``corrections`` outbox stream, which the hub
treats as training signal and must never lose.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

ALERT_KINDS: tuple[str, ...] = (
    "unscanned",
    "ticket_switch",
    "weight_mismatch",
    "removed_never_added",
    "unknown_item",
    "sensor_fault",
)
"""Alert kinds the runtime raises today; other lowercase identifiers are accepted too."""


def sensor_key(boot_id: str, eid: int) -> str:
    """Idempotency key of a command caused by sensor event ``eid`` of MCU boot ``boot_id``."""
    return f"{boot_id}:{eid}"


def new_key() -> str:
    """A fresh idempotency key for a command that no sensor event identifies (a person's tap)."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class SessionOpened:
    """A shopper starts using the cart; ``session_id`` is chosen by the runtime."""

    key: str
    session_id: str


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """The shopping session ends (checkout, abandonment); its open prompts expire."""

    key: str
    reason: str = "checkout"


@dataclass(frozen=True, slots=True)
class ItemAdded:
    """``qty`` units of ``sku`` went into the basket."""

    key: str
    sku: str
    qty: int = 1
    unit_price_cents: int | None = None
    unit_weight_g: float | None = None
    evidence_id: str | None = None
    corrects: str | None = None
    exemplar: Mapping[str, Any] | None = None
    """With ``corrects``: what the hub needs to learn from the correction (the crop's
    embedding, ``{"embedding_f16": base64}``), so every cart learns what this one did."""


@dataclass(frozen=True, slots=True)
class ItemRemoved:
    """``qty`` units of ``sku`` left the basket.

    Removing more than the basket holds removes what is there and raises a
    ``removed_never_added`` alert: the physical world is right, the basket was
    wrong, and a person should look.
    """

    key: str
    sku: str
    qty: int = 1
    evidence_id: str | None = None
    corrects: str | None = None


@dataclass(frozen=True, slots=True)
class QuantityChanged:
    """The basket holds exactly ``qty`` of ``sku`` (0 removes the line), e.g. after a recount."""

    key: str
    sku: str
    qty: int
    evidence_id: str | None = None
    corrects: str | None = None


@dataclass(frozen=True, slots=True)
class PromptOpened:
    """A question to the shopper or attendant, answered by picking one of ``options``."""

    key: str
    prompt_id: str
    question: str
    options: tuple[str, ...]
    expires_at: float | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    """JSON-ready facts the answer needs (event kind, quantity, measured weight, crop,
    the crop's embedding): kept with the prompt so that an answer given after a
    restart bills and learns exactly what it would have before it."""


@dataclass(frozen=True, slots=True)
class PromptAnswered:
    """An open prompt was answered with one of its options, or by a scan.

    ``scanned``: the code the shopper scanned instead of tapping; ``answer`` is
    then the SKU it names (or ``barcode:<code>`` for a code in no catalogue)
    and need not be one of the options: "none of these, it is this".
    """

    key: str
    prompt_id: str
    answer: str
    scanned: str | None = None


@dataclass(frozen=True, slots=True)
class PromptExpired:
    """An open prompt timed out; a no-op (``applied=False``) if it was answered first."""

    key: str
    prompt_id: str


@dataclass(frozen=True, slots=True)
class AlertRaised:
    """Something needs a person: ``kind`` (see :data:`ALERT_KINDS`) plus JSON evidence."""

    key: str
    kind: str
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReviewQueued:
    """A crop the recogniser could not settle, queued for human labelling at the hub."""

    key: str
    crop_path: str
    reason: str
    candidates: tuple[tuple[str, float], ...] = ()
    weight_g: float | None = None
    exemplar: Mapping[str, Any] | None = None
    """What the hub's attendant needs to label the item, read when it was queued:
    ``{"embedding_f16": base64, "crop_jpeg": base64}``: the crop's embedding (what a label
    teaches the fleet) and the masked item crop as a JPEG of at most 64 KiB (what the
    attendant looks at; absent when the crop file was already gone). Never a whole frame
    (:mod:`cartos.runtime.privacy`); it travels on the ``review`` stream only."""


Command = (
    SessionOpened
    | SessionClosed
    | ItemAdded
    | ItemRemoved
    | QuantityChanged
    | PromptOpened
    | PromptAnswered
    | PromptExpired
    | AlertRaised
    | ReviewQueued
)


@dataclass(frozen=True, slots=True)
class AppliedResult:
    """What :meth:`cartos.basket.store.BasketStore.apply` did with a command.

    ``applied`` is False for a duplicate and for a command that found nothing
    to change (expiring a prompt that was already answered). For a duplicate,
    ``basket_version`` is the version the first application produced, so a
    replay answers exactly as the original did apart from the flags.
    """

    applied: bool
    duplicate: bool
    basket_version: int
    alerts: tuple[str, ...] = ()


def command_type(cmd: Command) -> str:
    """The command's type name as it appears in the ledger and outbox payloads."""
    return type(cmd).__name__


def command_fields(cmd: Command) -> dict[str, Any]:
    """The command's fields as JSON-ready data (tuples become lists)."""
    data = asdict(cmd)
    if isinstance(cmd, AlertRaised):
        data["evidence"] = dict(cmd.evidence)
    if isinstance(cmd, PromptOpened):
        data["context"] = dict(cmd.context)
    if isinstance(cmd, ItemAdded | ReviewQueued) and cmd.exemplar is not None:
        data["exemplar"] = dict(cmd.exemplar)
    return data
