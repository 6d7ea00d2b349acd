"""A generated catalogue imported and calibrated once per test session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cartos.catalog.store import CatalogStore
from cartos.inference import enrolment
from cartos.inference.calibration import CalibrationTargets
from cartos.inference.calibration_service import calibrate_from_manifest
from cartos.inference.embedder import Embedder
from cartos.synth import SynthCatalogue, SynthConfig, generate_catalogue, split_queries


@dataclass
class Prepared:
    synth: SynthCatalogue
    db: Path
    calibration_manifest: Path
    test_manifest: Path


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Prepared:
    root = tmp_path_factory.mktemp("synth")
    synth = generate_catalogue(
        root, SynthConfig(n_skus=30, refs_per_sku=3, queries_per_sku=4, n_new=3, seed=7)
    )
    cal, test = split_queries(synth)
    db = root / "catalogue.db"
    with CatalogStore(db) as store:
        enrolment.import_manifest(store, embedder, synth.manifest)
        calibrate_from_manifest(
            store, embedder, cal, CalibrationTargets(holdout_fraction=0.15, folds=6)
        )
    return Prepared(synth, db, cal, test)


@pytest.fixture
def catalogue_copy(prepared: Prepared, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the calibrated catalogue that a test may change."""
    copy = tmp_path / "catalogue.db"
    shutil.copyfile(prepared.db, copy)
    yield copy
