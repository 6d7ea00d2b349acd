"""Memory headroom: how much of the profile's RAM budget the cart process leaves free.

A cart board has no swap worth the name; when the process outgrows its budget
the kernel's OOM killer ends it mid-session. The backbone's inference arena is
the largest piece the runtime can give back, so when the free share of the
budget falls below the profile's required headroom the runtime releases the
model and decides with barcode and scale alone (``barcode_only``), and loads
it again once there is room. Hysteresis keeps it from flapping at the edge.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

STATUS = Path("/proc/self/status")


def resident_mib(status: Path = STATUS) -> float | None:
    """Resident set size of this process in MiB (Linux), or None where it cannot be read."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class MemoryGuard:
    """Tracks headroom against a budget and says when the model must go and may come back.

    ``required``: the free share of the budget below which memory counts as lost
    (the profile's ``memory.headroom``). ``recover_margin``: the model returns only
    once the free share is this much above ``required`` again, since loading it
    takes back roughly what releasing it freed.
    """

    budget_mib: float
    required: float
    recover_margin: float = 0.05
    interval_s: float = 1.0
    headroom: float | None = None
    low: bool = False
    _next: float = 0.0

    def update(self, now: float | None = None, rss_mib: float | None = None) -> bool:
        """Re-measure at most every ``interval_s``; returns whether ``low`` changed."""
        now = time.monotonic() if now is None else now
        if now < self._next and rss_mib is None:
            return False
        self._next = now + self.interval_s
        rss = resident_mib() if rss_mib is None else rss_mib
        if rss is None:
            self.headroom = None
            return False
        self.headroom = max(0.0, min(1.0, 1.0 - rss / self.budget_mib))
        was = self.low
        if self.headroom < self.required:
            self.low = True
        elif self.headroom >= self.required + self.recover_margin:
            self.low = False
        return self.low != was
