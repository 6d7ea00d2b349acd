"""Root of the cartos error hierarchy.

Every package has its own ``errors.py`` deriving from :class:`CartosError`, so
the CLI can turn any expected failure into a one-line message and exit code
instead of a traceback.
"""

from __future__ import annotations


class CartosError(Exception):
    """An expected, user-reportable failure."""

    exit_code: int = 2
