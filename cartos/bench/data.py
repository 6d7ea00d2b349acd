"""Locating the real product-image data sets used by benchmarks and data tests.

The images are never part of the project. They live beside the checkout in
``../shared/data`` (or wherever ``CARTOS_DATA`` points), each data set with a
``manifest.csv``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from cartos.catalog.manifest import KNOWN_COLUMNS
from cartos.errors import CartosError

DATASETS = ("grozi120", "snacks", "freiburg")


class DataMissingError(CartosError):
    """A real-image data set is not present on this machine."""


def data_root() -> Path | None:
    """``$CARTOS_DATA``, else ``../shared/data`` beside the checkout or the working directory."""
    env = os.environ.get("CARTOS_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    candidates = [here.parents[2].parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if (c / "grozi120" / "manifest.csv").is_file():
            return c
    return None


def dataset_dir(name: str) -> Path:
    """Folder of one data set; raises DataMissingError naming where it looked."""
    root = data_root()
    if root is None or not (root / name / "manifest.csv").is_file():
        where = root or "../shared/data"
        raise DataMissingError(
            f"data set {name!r} not found under {where} (set CARTOS_DATA to its parent folder)"
        )
    return root / name


@dataclass(frozen=True)
class DataRow:
    image: Path
    sku: str
    barcode: str
    name: str
    brand: str
    family: str
    weight_g: str
    weight_tol_g: str
    split: str
    crop_no: int


def load_rows(name: str) -> list[DataRow]:
    """Rows of a SKU data set's manifest (grozi120 or snacks), images as absolute paths."""
    folder = dataset_dir(name)
    rows = []
    with (folder / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            stem = Path(r["image"]).stem
            digits = "".join(ch for ch in stem if ch.isdigit())
            rows.append(
                DataRow(
                    image=folder / r["image"],
                    sku=r["sku"],
                    barcode=r.get("barcode", ""),
                    name=r.get("name", ""),
                    brand=r.get("brand", ""),
                    family=r.get("family", ""),
                    weight_g=r.get("weight_g", ""),
                    weight_tol_g=r.get("weight_tol_g", ""),
                    split=r.get("split", "reference"),
                    crop_no=int(digits) if digits else 0,
                )
            )
    return rows


MANIFEST_HEADER = KNOWN_COLUMNS


def write_manifest(path: Path, rows: list[DataRow]) -> Path:
    """Write rows as a catalogue manifest (absolute image paths)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(MANIFEST_HEADER)
        for r in rows:
            w.writerow(
                [
                    str(r.image),
                    r.sku,
                    r.barcode,
                    r.name,
                    r.brand,
                    r.family,
                    r.weight_g,
                    r.weight_tol_g,
                ]
            )
    return path
