"""Pairing settled weights with scans into item events."""

from __future__ import annotations

from cartos.runtime.item_events import ItemEventAssembler, WindowParams
from cartos.runtime.modes import Health, mode_for
from cartos.sensors.bridge.events import Scan, Settled


def settled(eid: int, t: float, delta: float) -> Settled:
    return Settled(eid, t, eid * 1000, 1000.0 + delta, delta)


def scan(eid: int, t: float, code: str = "4006381333931") -> Scan:
    return Scan(eid, t, eid * 1000, code)


def test_scan_before_and_after_joins_the_weight_change() -> None:
    a = ItemEventAssembler(WindowParams(), boot_id=7)
    a.add_scan(scan(1, 10.0))  # scanned, then put in
    a.add_settled(settled(2, 12.0, 345.0))
    a.add_settled(settled(3, 20.0, 160.0))
    a.add_scan(scan(4, 21.0, "73513537"))  # put in, then scanned
    assert a.due(12.5) == []  # the window is still open
    first = a.due(14.0)
    assert [(e.kind, e.key, [s.code for s in e.scans]) for e in first] == [
        ("add", "w:7:2", ["4006381333931"])
    ]
    second = a.due(30.0)
    assert [(e.kind, [s.code for s in e.scans]) for e in second] == [("add", ["73513537"])]
    assert a.pending == 0


def test_removal_and_orphan_scan() -> None:
    a = ItemEventAssembler(WindowParams(orphan_scan_s=5.0))
    a.add_settled(settled(1, 5.0, -200.0))
    a.add_scan(scan(2, 30.0))  # nothing lands: reported alone after the orphan delay
    events = a.due(34.0)
    assert [e.kind for e in events] == ["remove"]
    assert a.due(34.9) == []
    events = a.due(35.1)
    assert [(e.kind, e.key) for e in events] == [("scan_only", "s:0:2")]


def test_scan_far_from_any_weight_change_does_not_join() -> None:
    a = ItemEventAssembler(WindowParams(scan_before_s=2.0, scan_after_s=1.0))
    a.add_scan(scan(1, 0.0))
    a.add_settled(settled(2, 10.0, 100.0))
    events = a.due(100.0)
    assert sorted(e.kind for e in events) == ["add", "scan_only"]
    add = next(e for e in events if e.kind == "add")
    assert add.scans == []


def test_degraded_modes_follow_health() -> None:
    h = Health(link=True, scale=True, model=True, camera_expected=True, last_frame=100.0)
    assert mode_for(h, 101.0) == "full"
    assert mode_for(h, 110.0) == "barcode_weight"  # no frame for 10 s
    h.scale = False
    assert mode_for(h, 101.0) == "vision_barcode"
    h.link = False
    assert mode_for(h, 101.0) == "camera_only"
    h.model = False
    assert mode_for(h, 101.0) == "barcode_only"
    h.model, h.link, h.scale = True, True, True
    assert mode_for(h, 101.0) == "full"  # recovery needs no restart
    assert h.to_dict(101.0)["sensors"] == {"link": True, "scale": True, "camera": True,
                                           "model": True}
