"""Errors raised while turning scanner text into a product identity.

A misread barcode must never become an item in the basket, so every rejection
is an exception with a machine-readable :class:`Rejection` (for counting
misreads per cause) and a human-readable reason that names what was wrong,
e.g. which check digit was expected and which one arrived.
"""

from __future__ import annotations

from enum import StrEnum

from cartos.errors import CartosError


class Rejection(StrEnum):
    """Why scanner text was refused; stable values, safe to log and aggregate."""

    EMPTY = "empty"
    NON_DIGIT = "non_digit"
    LENGTH = "length"
    SYMBOLOGY_IDENTIFIER = "symbology_identifier"
    CHECK_DIGIT = "check_digit"
    UPCE_NUMBER_SYSTEM = "upce_number_system"
    PRICE_CHECK_DIGIT = "price_check_digit"


class BarcodeError(CartosError):
    """Base class for barcode failures."""


class InvalidBarcodeError(BarcodeError):
    """Scanner text is not a valid EAN/UPC code; :attr:`reason` says why.

    ``str(error)`` is the reason itself, so the CLI's one-line ``error: …``
    message and a log line read the same. :attr:`rejection` is the cause as a
    stable value (every rejection raised by this package sets it) and
    :attr:`raw` the scanner text as received.
    """

    def __init__(
        self, reason: str, rejection: Rejection | None = None, raw: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rejection = rejection
        self.raw = raw


class VariableMeasureSchemeError(BarcodeError):
    """A store's variable-measure layout is inconsistent (configuration, not a scan).

    Raised when the scheme is built, so a bad store configuration fails at
    start-up instead of silently mis-pricing weighed goods at the first scan.
    """
