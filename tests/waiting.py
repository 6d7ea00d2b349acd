"""Polling for a condition in tests that talk to real processes (brokers, services, boards)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float, what: str,
               poll_s: float = 0.05) -> float:
    """Poll ``predicate`` until it is truthy; returns the seconds it took, or fails the test
    naming ``what`` after ``timeout`` seconds."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
