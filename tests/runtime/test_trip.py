"""A whole simulated trip through the real runtime: emulated board on a pty, real INT8 model."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cartos.runtime.simulation import SimulatedStore, Step, TripResult, default_trip, run_trip


@pytest.fixture(scope="module")
def trip(sim_store: SimulatedStore,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TripResult, list[Step]]]:
    steps = default_trip(sim_store, seed=0)
    yield run_trip(sim_store, steps, tmp_path_factory.mktemp("trip"), seed=0), steps


def test_final_basket_is_exactly_what_went_in(trip: tuple[TripResult, list[Step]]) -> None:
    result, _ = trip
    items = {i["sku"]: i["qty"] for i in result.basket["items"]}
    assert items == result.expected
    assert result.mode == "full"


def test_unknown_item_is_never_silently_added(trip: tuple[TripResult, list[Step]]) -> None:
    result, steps = trip
    unknown = [s.product.sku for s in steps if not s.product.known]
    assert unknown
    items = {i["sku"] for i in result.basket["items"]}
    # The unknown item's event ended in review with an alert, not as some catalogue SKU.
    assert result.basket["review"] >= 1
    assert "unscanned" in {a["kind"] for a in result.basket["alerts"]}
    assert not set(unknown) & items
    put_order = [s for s in steps if s.action == "put"]
    adds = [d for d in result.decisions if d["kind"] == "add"]
    for step, decision in zip(put_order, adds, strict=True):
        if not step.product.known:
            assert decision["decision"] != "accept"


def test_every_event_was_decided_once(trip: tuple[TripResult, list[Step]]) -> None:
    result, steps = trip
    item_events = [d for d in result.decisions if d["kind"] != "scan_answer"]
    assert len(item_events) == len(steps)
    assert len({d["event"] for d in result.decisions}) == len(result.decisions)
    assert all(d["latency_ms"] < 5000 for d in result.decisions)


def test_asked_to_scan_the_shopper_scans_and_the_scan_answers(
    trip: tuple[TripResult, list[Step]]
) -> None:
    """The unknown item's "please scan it" is answered by scanning it where it lies: its code
    is in no catalogue, so nothing is billed and the attendant is told."""
    result, steps = trip
    scanned = [a for _p, a in result.answers if a.startswith("scan ")]
    answers = [d for d in result.decisions if d["kind"] == "scan_answer"]
    assert len(scanned) == len(answers) >= 1
    unknown = next(s.product for s in steps if not s.product.known)
    assert f"scan {unknown.barcode}" in scanned
    assert any(d["sku"] is None and d["alerts"] == ["unlisted_barcode"] for d in answers)
    assert "unlisted_barcode" in {a["kind"] for a in result.basket["alerts"]}
    assert result.basket["pending_prompts"] == []


def test_demo_json_prints_the_final_basket_last(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cartos", "demo", "--json", "--skus", "12", "--out",
         str(tmp_path)],
        capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(final) >= {"items", "alerts"}
    assert all(set(i) == {"sku", "qty"} for i in final["items"])
    assert len(final["items"]) >= 2 and final["alerts"]
    # privacy: only item crops were written, never a whole camera frame
    for crop in (tmp_path / "review").glob("*.jpg"):
        import cv2

        image = cv2.imread(str(crop))
        assert image is not None and image.shape[0] < 480 and image.shape[1] < 640
