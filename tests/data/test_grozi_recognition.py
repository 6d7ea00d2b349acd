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
    # Every SKU, every other reference crop, a fifth of the queries: the same
    # protocol as the benchmark at about a third of the embedding work.
    keep = sorted({r.sku for r in split.catalogue})
    catalogue = split.catalogue[::2]
    calibration = split.calibration[::2]
    known_q = split.queries_known[::5]
    unknown_q = split.queries_unknown[::2]

    db = tmp_path / "grozi.db"
    with CatalogStore(db) as store:
        report = enrolment.import_manifest(
            store, embedder, write_manifest(tmp_path / "cat.csv", catalogue)
        )
        assert report.problems == [] and report.skus_added == len(keep)
        calibrate_from_manifest(
            store, embedder, write_manifest(tmp_path / "cal.csv", calibration), CalibrationTargets()
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
    # The targets, with a little slack for the smaller sample.
    assert correct.mean() >= 0.88
    assert accepted.mean() >= 0.55
    wrong_accepts = (~correct & accepted).sum() + unknown_accepted.sum()
    assert wrong_accepts / max(1, accepted.sum() + unknown_accepted.sum()) <= 0.015
    assert unknown_accepted.mean() <= 0.03
    # Items outside the catalogue mostly end as unknown or at family/brand level.
    # With half the references the gallery is sparser than in the benchmark
    # (30 % proposed at SKU level here, 14 % there), hence the looser bound.
    sku_level = np.mean([a.decision in ("accept", "confirm") for a in unknown])
    assert sku_level <= 0.35
