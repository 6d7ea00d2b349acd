"""Errors of the hardware-in-the-loop harness."""

from __future__ import annotations

from cartos.errors import CartosError


class HilError(CartosError):
    """The harness could not run a scenario (no board, bad profile)."""


class ScenarioError(HilError):
    """A scenario file is malformed; the message names the file and line."""
