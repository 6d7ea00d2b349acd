from __future__ import annotations

from pathlib import Path

import pytest

from cartos.fusion import (
    CalibrationEvent,
    FusionCalibrationError,
    FusionPolicy,
    FusionTargets,
    fit_fusion_calibration,
    fuse,
)
from tests.fusion import synthetic_events


def _measure(
    policy: FusionPolicy, evs: list[CalibrationEvent], w: synthetic_events.EventWorld
) -> tuple[float, float, float]:
    accepted = correct = known_accepted = unknown_accepted = 0
    known = sum(e.truth is not None for e in evs)
    for e in evs:
        a = fuse(e.vision, e.weight, e.barcode, w.catalogue, policy)
        if a.decision == "accept":
            accepted += 1
            correct += a.sku == e.truth
            known_accepted += e.truth is not None
            unknown_accepted += e.truth is None
    return correct / accepted, known_accepted / known, unknown_accepted / (len(evs) - known)


def test_fit_meets_target_precision_on_held_out_events() -> None:
    w = synthetic_events.world(80, seed=3)
    evs = synthetic_events.events(w, 4000, seed=4)
    held_out = synthetic_events.events(w, 4000, seed=5)
    policy = fit_fusion_calibration(evs, w.catalogue)
    assert policy.calibrated and policy.accept_threshold < 1.0
    precision, automation, unknown_silent = _measure(policy, held_out, w)
    # 99.5 % target; a fresh sample of a few thousand events may sit a little below it
    assert precision >= 0.99
    assert unknown_silent < 0.01
    # the same camera without the scale, fitted and measured the same way, automates far less
    blind = [CalibrationEvent(e.vision, None, None, e.truth) for e in evs]
    held_out_blind = [CalibrationEvent(e.vision, None, None, e.truth) for e in held_out]
    camera_only = fit_fusion_calibration(blind, w.catalogue)
    _, automation_camera, _ = _measure(camera_only, held_out_blind, w)
    assert automation > automation_camera + 0.1


def test_stress_unknown_items_are_not_silently_accepted() -> None:
    w = synthetic_events.world(60, seed=6)
    policy = fit_fusion_calibration(synthetic_events.events(w, 3000, seed=7), w.catalogue)
    # stress: nothing but unknown items, half of them weighing like some catalogue pack
    stress = synthetic_events.events(w, 3000, seed=8, unknown_share=1.0)
    answers = [fuse(e.vision, e.weight, None, w.catalogue, policy) for e in stress]
    accepted = sum(a.decision == "accept" for a in answers)
    # an accepted unknown is a wrong accept: it may happen only at the calibrated risk
    assert accepted / len(stress) <= 1.0 - policy.target_precision + 0.005
    # and every unknown answer with weight added is flagged for staff
    assert all("unscanned" in a.alert_kinds for a in answers if a.decision == "unknown")
    assert sum(a.decision == "unknown" for a in answers) > len(stress) / 2


def test_policy_round_trips_through_json(tmp_path: Path) -> None:
    w = synthetic_events.world(40, seed=10)
    evs = synthetic_events.events(w, 800, seed=11)
    policy = fit_fusion_calibration(evs, w.catalogue)
    loaded = FusionPolicy.load(policy.save(tmp_path / "fusion_policy.json"))
    assert loaded.accept_threshold == policy.accept_threshold
    assert loaded.model == policy.model
    for e in evs[:50]:
        a = fuse(e.vision, e.weight, None, w.catalogue, policy)
        b = fuse(e.vision, e.weight, None, w.catalogue, loaded)
        assert (a.decision, a.sku, a.confidence) == (b.decision, b.sku, b.confidence)


def test_fit_refuses_events_without_mistakes() -> None:
    w = synthetic_events.world(30, seed=12)
    evs = synthetic_events.events(w, 200, seed=13, unknown_share=0.0, camera_error=0.0)
    with pytest.raises(FusionCalibrationError):
        fit_fusion_calibration(evs, w.catalogue)
    with pytest.raises(FusionCalibrationError):
        FusionPolicy.from_json("{not json")


def test_expected_unknown_share_relaxes_the_threshold_it_is_fitted_for() -> None:
    w = synthetic_events.world(60, seed=14)
    evs = synthetic_events.events(w, 3000, seed=15, unknown_share=0.5)
    as_sampled = fit_fusion_calibration(evs, w.catalogue)
    rare_unknowns = fit_fusion_calibration(
        evs, w.catalogue, targets=FusionTargets(unknown_share=0.05)
    )
    assert rare_unknowns.accept_threshold <= as_sampled.accept_threshold
    assert rare_unknowns.metrics["accept_precision_weighted"] >= 0.995
    with pytest.raises(FusionCalibrationError):
        fit_fusion_calibration(evs, w.catalogue, targets=FusionTargets(unknown_share=1.0))
