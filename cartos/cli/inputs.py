"""Turning command-line PATH arguments into an ordered list of images.

A PATH may be an image file, a directory (its images, recursively, sorted) or
a CSV with an ``image`` column (paths relative to the CSV). Order is kept so
``recognize`` answers line up with its input.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class InputImage:
    """One image to process; ``label`` is what the user will see in the output."""

    path: Path
    label: str
    sku: str | None = None
    family: str | None = None
    brand: str | None = None


def _from_csv(path: Path, split: str | None = None) -> list[InputImage]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "image" not in reader.fieldnames:
            raise ValueError(f"{path}: CSV has no 'image' column")
        out = []
        for row in reader:
            text = (row.get("image") or "").strip()
            if not text or (split is not None and row.get("split") != split):
                continue
            out.append(
                InputImage(
                    path=(path.parent / text),
                    label=text,
                    sku=(row.get("sku") or None),
                    family=(row.get("family") or None),
                    brand=(row.get("brand") or None),
                )
            )
        return out


def expand_inputs(args: Iterable[str | Path], split: str | None = None) -> list[InputImage]:
    """Expand images, directories and CSV lists, preserving argument order.

    ``split`` keeps only CSV rows whose ``split`` column equals it.

    A path that does not exist is still returned (as an image), so the caller
    reports it in order like any other unreadable image.
    """
    out: list[InputImage] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            out.extend(InputImage(p, str(p)) for p in files)
        elif path.suffix.lower() == ".csv" and path.is_file():
            out.extend(_from_csv(path, split))
        else:
            out.append(InputImage(path, str(path)))
    return out
