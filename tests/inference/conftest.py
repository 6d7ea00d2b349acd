"""A generated catalogue imported and calibrated once per test session."""

from __future__ import annotations

import csv
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
from cartos.synth import SynthCatalogue, SynthConfig, generate_catalogue


@dataclass
class Prepared:
    synth: SynthCatalogue
    db: Path
    calibration_manifest: Path
    test_manifest: Path


def split_queries(queries: Path, out_dir: Path) -> tuple[Path, Path]:
    """Even query rows calibrate, odd rows test: both labelled, neither a reference."""
    with queries.open(newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    cal, test = out_dir / "calibration.csv", out_dir / "test.csv"
    for path, part in ((cal, body[0::2]), (test, body[1::2])):
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(part)
    return cal, test


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Prepared:
    root = tmp_path_factory.mktemp("synth")
    synth = generate_catalogue(
        root, SynthConfig(n_skus=30, refs_per_sku=3, queries_per_sku=4, n_new=3, seed=7)
    )
    cal, test = split_queries(synth.queries, root)
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
