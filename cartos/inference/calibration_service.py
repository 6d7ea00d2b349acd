"""``cartos calibrate``: labelled images in, stored calibration + report out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cartos.catalog.manifest import read_manifest
from cartos.catalog.store import CatalogStore
from cartos.inference.calibrate import fit_calibration
from cartos.inference.calibration import Calibration, CalibrationTargets
from cartos.inference.calibration_report import report_files, write_report
from cartos.inference.catalogue_model import check_signature
from cartos.inference.embedder import Embedder
from cartos.inference.enrolment import RowProblem, embed_items
from cartos.inference.errors import InferenceError
from cartos.inference.index import CatalogueSnapshot
from cartos.inference.recognizer import CALIBRATION_ARTIFACT


@dataclass
class CalibrationResult:
    calibration: Calibration
    catalog_version: int
    report_dir: Path
    problems: list[RowProblem] = field(default_factory=list)


def default_report_dir(db: Path, version: int) -> Path:
    return db.with_name(db.name + ".calibration") / f"v{version}"


def calibrate_from_manifest(
    store: CatalogStore,
    embedder: Embedder,
    manifest_path: Path,
    targets: CalibrationTargets,
    report_dir: Path | None = None,
) -> CalibrationResult:
    """Embed the labelled images, fit, store the calibration and its report."""
    check_signature(store, embedder)
    manifest = read_manifest(manifest_path)
    problems = [RowProblem(p.line, p.image, p.message) for p in manifest.problems]
    rows = manifest.rows
    vectors, bad = embed_items(embedder, [(r.line, r.image, r.image_text) for r in rows], False)
    problems.extend(bad)
    rows = [r for r in rows if r.line in vectors]
    if len(rows) < 20:
        raise InferenceError(f"{manifest_path}: need at least 20 readable labelled images")
    snap = CatalogueSnapshot.from_store(store)
    known = {r.sku: r for r in snap.records}

    def attr(row_sku: str, manifest_value: str | None, name: str) -> str | None:
        rec = known.get(row_sku)
        return getattr(rec, name) if rec is not None else manifest_value

    matrix = np.stack([vectors[r.line] for r in rows])
    cal, _ = fit_calibration(
        snap,
        matrix,
        [r.sku.sku for r in rows],
        [attr(r.sku.sku, r.sku.family, "family") for r in rows],
        [attr(r.sku.sku, r.sku.brand, "brand") for r in rows],
        targets,
    )
    files = report_files(cal)
    with store.change("calibrate", f"calibrate on {len(rows)} images ({manifest_path.name})"):
        store.put_artifact(CALIBRATION_ARTIFACT, cal.to_json().encode("utf-8"))
        for name, data in files.items():
            store.put_artifact(name, data)
    out = report_dir or default_report_dir(store.path, store.version)
    write_report(cal, out)
    return CalibrationResult(cal, store.version, out, problems)
