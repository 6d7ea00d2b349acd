"""Real grocery photos through the real pipeline (a reduced GroZi-120 protocol).

The full measurement is ``cartos bench recognition``; this test keeps a
smaller version of it in CI so a regression in the backbone, projection or
calibration fails the build rather than a benchmark nobody re-ran.
"""

from __future__ import annotations

import numpy as np
import pytest

from cartos.bench.data import write_manifest
from cartos.bench.protocol import grozi_split
from cartos.catalog.store import CatalogStore
from cartos.inference import enrolment
from cartos.inference.calibration import CalibrationTargets
from cartos.inference.calibration_service import calibrate_from_manifest
from cartos.inference.embedder import Embedder
from cartos.inference.recognizer import Recognizer
from tests.conftest import require_data

pytestmark = [pytest.mark.data, pytest.mark.slow]


def test_reduced_grozi_protocol(tmp_path, embedder: Embedder) -> None:  # type: ignore[no-untyped-def]
    require_data("grozi120")
    split = grozi_split(seed=0)
    keep = sorted({r.sku for r in split.catalogue})[::3]  # 36 known SKUs
    subset = set(keep)
    catalogue = [r for r in split.catalogue if r.sku in subset]
    calibration = [r for r in split.calibration if r.sku in subset]
    known_q = [r for r in split.queries_known if r.sku in subset][::4]
    unknown_q = split.queries_unknown[::4]

    db = tmp_path / "grozi.db"
    with CatalogStore(db) as store:
        report = enrolment.import_manifest(
            store, embedder, write_manifest(tmp_path / "cat.csv", catalogue)
        )
        assert report.problems == [] and report.skus_added == len(keep)
        calibrate_from_manifest(
            store,
            embedder,
            write_manifest(tmp_path / "cal.csv", calibration),
            CalibrationTargets(holdout_fraction=0.1),
        )
        recognizer = Recognizer.from_store(store)
    assert recognizer.calibration is not None

    known = recognizer.recognize_vectors(embedder.embed_paths([r.image for r in known_q]).vectors)
    unknown = recognizer.recognize_vectors(
        embedder.embed_paths([r.image for r in unknown_q]).vectors
    )
    correct = np.array([a.sku == r.sku for a, r in zip(known, known_q, strict=True)])
    accepted = np.array([a.decision == "accept" for a in known])
    unknown_accepted = np.array([a.decision == "accept" for a in unknown])
    assert correct.mean() >= 0.88
    assert accepted.mean() >= 0.5
    wrong_accepts = (~correct & accepted).sum() + unknown_accepted.sum()
    assert wrong_accepts / max(1, accepted.sum() + unknown_accepted.sum()) <= 0.02
    # items outside the catalogue mostly end as unknown or at family/brand level
    sku_level = np.mean([a.decision in ("accept", "confirm") for a in unknown])
    assert sku_level <= 0.3
