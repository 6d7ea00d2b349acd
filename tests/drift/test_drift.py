"""Drift triggers: a lighting/colour shift in replayed frames trips the PSI trigger within one
window, a stable stream does not in 100 windows; class accuracy, growth and successors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cartos.drift.errors import DriftError
from cartos.drift.features import input_features
from cartos.drift.monitor import DriftMonitor, DriftSettings
from cartos.drift.psi import bin_edges, psi, shares
from cartos.synth.generator import SynthConfig, generate_catalogue

WINDOW = 200


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """Item crops as the camera replays them: a synthetic store's photographed packs."""
    cat = generate_catalogue(tmp_path_factory.mktemp("drift-store"),
                             SynthConfig(n_skus=24, refs_per_sku=4, queries_per_sku=4,
                                         n_new=0, seed=11))
    paths = sorted(Path(cat.root, "images").rglob("*.jpg"))
    images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]
    assert len(images) >= 150 and all(i is not None for i in images)
    return images


def _warm_dim_light(image: np.ndarray) -> np.ndarray:
    """A store's lamps changed: 25 % dimmer and warmer (more red, less blue)."""
    out = image.astype(np.float32) * np.array([0.62, 0.75, 0.95], dtype=np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def test_psi_is_zero_for_the_same_distribution_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 5000)
    edges = bin_edges(ref)
    same = psi(shares(ref, edges), shares(rng.normal(0, 1, 5000), edges))
    moved = psi(shares(ref, edges), shares(rng.normal(0.5, 1, 5000), edges))
    assert same < 0.02 < 0.2 < moved
    with pytest.raises(DriftError):
        bin_edges([1.0, 2.0])


def test_a_stable_stream_raises_nothing_in_100_windows_and_a_shift_trips_in_one(
    frames: list[np.ndarray]
) -> None:
    base = [input_features(f) for f in frames]
    shifted = [input_features(_warm_dim_light(f)) for f in frames]
    rng = np.random.default_rng(7)
    monitor = DriftMonitor(DriftSettings(window=WINDOW))
    for _ in range(5 * WINDOW):  # the reference: the first five windows
        assert monitor.observe(base[rng.integers(len(base))]) == []
    worst = 0.0
    for _ in range(100 * WINDOW):
        assert monitor.observe(base[rng.integers(len(base))]) == [], monitor.last_psi
        if monitor.last_psi:
            worst = max(worst, *monitor.last_psi.values())
    assert monitor.windows == 105 and worst < DriftSettings().psi_tolerance
    alerts = []
    for _ in range(WINDOW):  # the lamps change: the very next window must say so
        alerts += monitor.observe(shifted[rng.integers(len(shifted))])
    assert [a.trigger for a in alerts] == ["input_drift"]
    evidence = alerts[0].evidence
    assert {"brightness", "red_balance"} <= set(evidence["psi"])
    assert evidence["window_means"]["brightness"] < np.mean([b["brightness"] for b in base])


def test_a_class_below_its_accuracy_in_two_consecutive_windows_is_an_alert() -> None:
    monitor = DriftMonitor(DriftSettings(window=50, bins=10, min_class_events=10,
                                         reference_windows=1))
    feature = {"brightness": 1.0}

    def window(wrong_a: int) -> list[str]:
        for i in range(20):
            monitor.outcome("sku-a", corrected=i < wrong_a)
            monitor.outcome("sku-b", corrected=False)
        out: list[str] = []
        for i in range(50):
            out += [a.evidence.get("sku", a.trigger) for a in
                    monitor.observe({"brightness": feature["brightness"] + i})]
        return out

    assert window(wrong_a=10) == []          # reference window; sku-a at 50 % once
    assert window(wrong_a=10) == ["sku-a"]   # twice in a row: alert
    assert window(wrong_a=0) == []           # recovered
    assert window(wrong_a=10) == []          # once again is not yet a trend


def test_catalogue_growth_and_successor_confusion() -> None:
    monitor = DriftMonitor(DriftSettings(window=50, successor_hits=3, reference_windows=1),
                           discontinued=["old"])
    assert monitor.catalogue_growth(4, 100) is None
    alert = monitor.catalogue_growth(6, 100)
    assert alert is not None and alert.evidence["share"] == 0.06
    alerts = []
    for i in range(50):
        alerts += monitor.observe({"brightness": float(i)}, answer="old" if i < 4 else "new")
    assert [(a.trigger, a.evidence["sku"]) for a in alerts] == [("successor_confusion", "old")]
