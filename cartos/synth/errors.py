"""Errors raised by the synthetic catalogue generator."""

from __future__ import annotations

from cartos.errors import CartosError


class SynthError(CartosError):
    """A synthetic catalogue could not be generated (bad configuration or output folder)."""
