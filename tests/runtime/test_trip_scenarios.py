"""The trip scenario files (``tests/scenarios/trips/*.toml``), each played through the real
runtime, the emulated board on a pty and the shipped INT8 model, outcome compared exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from cartos.runtime.simulation import SimulatedStore
from cartos.runtime.trip_scenario import (
    TripScenarioError,
    load,
    mismatches,
    play,
    product,
)

TRIPS = sorted((Path(__file__).resolve().parents[1] / "scenarios" / "trips").glob("*.toml"))


def test_the_suite_covers_what_the_cart_must_handle() -> None:
    names = {p.stem for p in TRIPS}
    assert {"adds_and_removes", "multiples", "produce_by_weight", "unscanned_item",
            "ticket_switch", "unknown_item_review", "camera_down", "scale_and_link_faults",
            "model_missing", "removed_never_added", "label_weight_mismatch"} <= names
    for path in TRIPS:
        scenario = load(path)
        assert scenario.description and scenario.expect.get("items") is not None, path
        assert "alerts" in scenario.expect, f"{path}: alerts must be asserted exactly"


@pytest.mark.parametrize("path", TRIPS, ids=[p.stem for p in TRIPS])
def test_trip_scenario(path: Path, sim_store: SimulatedStore, tmp_path: Path) -> None:
    scenario = load(path)
    got, problems, _result = play(scenario, sim_store, tmp_path)
    assert problems == [], f"{path.name}: {problems}\nfull outcome: {got}"


def test_a_wrong_expectation_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[[steps]]\nput = "known:0"\n[expect]\nitems = {}\nalerts = []\n')
    scenario = load(path)
    got = {"items": {"known:0": 1}, "alerts": ["unscanned"], "modes": ["full"]}
    assert mismatches(scenario, got) == [
        "items: expected {}, got {'known:0': 1}",
        "alerts: expected [], got ['unscanned']",
    ]


@pytest.mark.parametrize("text, message", [
    ('[[steps]]\nput = "known:0"\nwhen = 3\n', "unknown key"),
    ('[[steps]]\nput = "known:0"\ntake = "known:0"\n', "exactly one of put / take"),
    ('description = "x"\n', "at least one"),
    ('[[steps]]\nput = "known:0"\n[expect]\nbasket = {}\n', "unknown key"),
    ('[[steps]]\nput = "known:0"\nmodel = 3\n', "unknown key"),
    ('model = "tiny"\n[[steps]]\nput = "known:0"\n', "model must be"),
    ("[[steps]\n", "t.toml"),
])
def test_malformed_scenario_files_are_refused_clearly(tmp_path: Path, text: str,
                                                      message: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(TripScenarioError, match=message):
        load(path)


def test_product_roles_resolve_and_refuse_what_the_store_lacks(sim_store: SimulatedStore) -> None:
    assert product(sim_store, "known:0").known
    assert not product(sim_store, "unknown:0").known
    assert product(sim_store, "produce:0").barcode == ""
    with pytest.raises(TripScenarioError, match="has"):
        product(sim_store, "known:999")
    with pytest.raises(TripScenarioError, match="expected one of"):
        product(sim_store, "shelf:1")
