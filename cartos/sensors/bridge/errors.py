"""Errors of the microcontroller link."""

from __future__ import annotations

from cartos.errors import CartosError


class BridgeError(CartosError):
    """The cart microcontroller link failed in a way the caller must hear about."""


class ProtocolMismatchError(BridgeError):
    """The firmware speaks a different protocol version or message set: refuse it.

    Talking to mismatched firmware would misread weights and scans, so the
    driver stops and names every difference instead of guessing.
    """


class HandshakeTimeoutError(BridgeError):
    """The board did not answer ``identify`` in time."""
