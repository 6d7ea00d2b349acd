"""From sensor events to item events: which weight change and which scans belong together.

A settled weight change opens an item event (positive: something was put in,
negative: something was taken out). Scans join the event whose weight change
lies within a window around them: shoppers scan just before or just after
they put an item in. An event is decided once its window has closed (no scan
can still join it) and the camera has had time to see the scene settle; a
scan with no weight change by then is reported on its own, since a scanned
item that never landed is worth a prompt, not a basket line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cartos.sensors.bridge.events import Scan, Settled


@dataclass(frozen=True)
class WindowParams:
    """How scans and weight changes are paired, in seconds of host time."""

    scan_before_s: float = 4.0
    """A scan this long before a weight change belongs to it (scan, then put in)."""
    scan_after_s: float = 1.5
    """A scan this long after a weight change still belongs to it (put in, then scan)."""
    camera_settle_s: float = 0.8
    """Wait after the weight settled so the camera has still frames of the result."""
    orphan_scan_s: float = 6.0
    """A scan with no weight change for this long is reported alone."""


@dataclass
class ItemEvent:
    """One thing that happened to the basket, ready to decide once ``due`` has passed."""

    key: str
    settled: Settled | None
    scans: list[Scan] = field(default_factory=list)

    @property
    def t(self) -> float:
        if self.settled is not None:
            return self.settled.t
        return self.scans[0].t

    @property
    def kind(self) -> str:
        if self.settled is None:
            return "scan_only"
        return "add" if self.settled.delta_g > 0 else "remove"


class ItemEventAssembler:
    """Pairs settled weights with scans; hands out events whose window has closed."""

    def __init__(self, params: WindowParams | None = None, boot_id: int | None = None) -> None:
        self.params = params or WindowParams()
        self.boot_id = boot_id
        self._open: list[ItemEvent] = []
        self._loose_scans: list[Scan] = []
        self._restored_keys: dict[Scan, str] = {}

    def _key(self, kind: str, eid: int) -> str:
        return f"{kind}:{self.boot_id or 0}:{eid}"

    def settled_key(self, settled: Settled) -> str:
        """The item event key a weight change gets: ``w:<board boot>:<eid>``, stable across
        host restarts, so the basket commands of a replayed event keep their keys."""
        return self._key("w", settled.eid)

    def scan_key(self, scan: Scan) -> str:
        """The key of a scan (and of its event when it stays alone)."""
        return self._restored_keys.get(scan) or self._key("s", scan.eid)

    def add_settled(self, settled: Settled, key: str | None = None) -> None:
        """Open an item event; ``key`` overrides the key (a replayed event keeps its own)."""
        event = ItemEvent(key or self.settled_key(settled), settled)
        p = self.params
        keep: list[Scan] = []
        for scan in self._loose_scans:
            if settled.t - p.scan_before_s <= scan.t <= settled.t + p.scan_after_s:
                event.scans.append(scan)
            else:
                keep.append(scan)
        self._loose_scans = keep
        self._open.append(event)

    def add_scan(self, scan: Scan, key: str | None = None) -> None:
        """Pair a scan with a weight change; ``key`` as for :meth:`add_settled`."""
        if key is not None:
            self._restored_keys[scan] = key
        p = self.params
        # The most recent weight change whose window covers the scan takes it.
        for event in reversed(self._open):
            s = event.settled
            if s is not None and s.t - p.scan_before_s <= scan.t <= s.t + p.scan_after_s:
                event.scans.append(scan)
                return
        self._loose_scans.append(scan)

    def due(self, now: float) -> list[ItemEvent]:
        """Events whose windows have closed, oldest first; they leave the assembler."""
        p = self.params
        ready = [
            e for e in self._open
            if now >= e.t + max(p.scan_after_s, p.camera_settle_s)
        ]
        self._open = [e for e in self._open if e not in ready]
        orphans = [s for s in self._loose_scans if now >= s.t + p.orphan_scan_s]
        self._loose_scans = [s for s in self._loose_scans if s not in orphans]
        ready.extend(ItemEvent(self.scan_key(s), None, [s]) for s in orphans)
        for s in orphans:
            self._restored_keys.pop(s, None)
        return sorted(ready, key=lambda e: e.t)

    @property
    def pending(self) -> int:
        return len(self._open) + len(self._loose_scans)
