"""The cart's decider feeds every recognised crop to the drift monitor: a lamp change in what
the camera sees becomes an alert with its evidence, and PSI reaches the metrics."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from cartos.catalog.store import CatalogStore
from cartos.drift.monitor import DriftMonitor, DriftSettings
from cartos.fusion.calibration_service import load_policy
from cartos.fusion.catalogue_view import CatalogueView
from cartos.inference.embedder import Embedder
from cartos.inference.recognizer import Recognizer
from cartos.runtime.decider import EventDecider, prompt_context
from cartos.runtime.simulation import SimulatedStore
from cartos.telemetry.metrics import Metrics


def test_recognised_crops_feed_the_drift_monitor(sim_store: SimulatedStore,
                                                  tmp_path: Path) -> None:
    with CatalogStore(sim_store.db) as store:
        decider = EventDecider(Recognizer.from_store(store, Embedder()),
                               CatalogueView.from_store(store), load_policy(store),
                               tmp_path / "review")
    decider.drift = DriftMonitor(DriftSettings(window=100, reference_windows=3,
                                               psi_tolerance=0.25))
    shots = [p for p in sorted((sim_store.root).rglob("*.jpg")) if "new" not in p.parts]
    crops = [cv2.imread(str(p)) for p in shots]
    assert len(crops) >= 40 and all(c is not None for c in crops)
    rng = np.random.default_rng(0)
    for _ in range(400):  # three reference windows and one like them
        decider._recognise([crops[rng.integers(len(crops))]])
    assert decider.drift_alerts == [] and decider.drift.reference is not None
    dim = np.array([0.55, 0.7, 0.95], dtype=np.float32)  # dimmer, warmer lamps
    for _ in range(100):
        crop = crops[rng.integers(len(crops))]
        decider._recognise([np.clip(crop * dim, 0, 255).astype(np.uint8)])
    triggers = {a.trigger for a in decider.drift_alerts}
    assert "input_drift" in triggers
    assert decider.drift.last_psi["brightness"] > 0.25

    metrics = Metrics()
    metrics.set_drift_psi(decider.drift.last_psi)
    metrics.drift_alert("input_drift")
    text = metrics.render().decode()
    assert 'cartos_drift_psi{feature="brightness"}' in text
    assert 'cartos_drift_alerts_total{trigger="input_drift"} 1.0' in text


def test_the_prompt_context_keeps_the_cameras_top_answer() -> None:
    class _Event:
        key, settled = "e1", None

    from cartos.runtime.decider import Decision

    decision = Decision(_Event(), "add", "confirm", None, 1, 0.4,  # type: ignore[arg-type]
                        vision_candidates=["sku-7", "sku-2"])
    assert prompt_context(decision)["vision_top"] == "sku-7"
