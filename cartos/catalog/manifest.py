"""Reader for the manifest CSV a retailer exports with its reference images.

One row names one reference image and the SKU it shows, plus optional SKU
attributes (barcode, name, brand, family, weights). Manifests come out of
spreadsheets and point-of-sale exports, so they are read defensively:

* A problem that makes the whole file unusable (unreadable, no ``image`` or
  ``sku`` column) raises :class:`ManifestError`.
* A problem confined to one row is recorded in :attr:`Manifest.problems` with
  its line number and the row is left out, so one typo does not block an
  import of thousands of good rows, and the operator gets a list to fix.

Barcodes stay strings: GTINs carry leading zeros that a number would lose.
Image files are not opened here; decoding belongs to the importer.
"""

from __future__ import annotations

import csv
import math
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from cartos.catalog.errors import ManifestError
from cartos.catalog.records import SkuRecord

REQUIRED_COLUMNS: tuple[str, ...] = ("image", "sku")
ATTRIBUTE_COLUMNS: tuple[str, ...] = (
    "barcode",
    "name",
    "brand",
    "family",
    "weight_g",
    "weight_tol_g",
)
KNOWN_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + ATTRIBUTE_COLUMNS

MAX_SKU_LENGTH = 64
BARCODE_LENGTHS = frozenset({8, 12, 13, 14})
"""GTIN-8, UPC-A (GTIN-12), EAN-13 and GTIN-14."""

_AttributeValue = str | float


@dataclass(frozen=True)
class ManifestRow:
    """An accepted row.

    ``sku`` carries the SKU's attributes merged over all accepted rows of that
    SKU, so every row of one SKU holds the same record and an importer can
    upsert any of them.
    """

    line: int
    image: Path
    image_text: str
    sku: SkuRecord


@dataclass(frozen=True)
class ManifestProblem:
    """A rejected row: where it is, what image it named, and why it was rejected."""

    line: int
    image: str
    message: str


@dataclass
class Manifest:
    path: Path
    rows: list[ManifestRow]
    problems: list[ManifestProblem]
    warnings: list[str] = field(default_factory=list)

    @property
    def skus(self) -> list[SkuRecord]:
        """Each SKU of the accepted rows once, in order of first appearance."""
        seen: dict[str, SkuRecord] = {}
        for row in self.rows:
            seen.setdefault(row.sku.sku, row.sku)
        return list(seen.values())


@dataclass
class _Candidate:
    """A row that passed the per-row checks, before cross-row checks."""

    line: int
    image: Path
    image_text: str
    sku: str
    attributes: dict[str, _AttributeValue]


def read_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest; see the module docstring for what is checked."""
    path = Path(path)
    header_line, header, records = _read_records(path)
    columns, warnings = _map_header(header, header_line, path)
    folder = path.resolve().parent

    problems: list[ManifestProblem] = []
    candidates: list[_Candidate] = []
    for line, cells in records:
        candidate, messages = _parse_row(line, cells, columns, len(header), folder)
        if candidate is None:
            image_text = _cell(cells, columns["image"])
            problems.append(ManifestProblem(line, image_text, "; ".join(messages)))
        else:
            candidates.append(candidate)

    accepted, cross_problems = _check_across_rows(candidates)
    problems.extend(cross_problems)
    problems.sort(key=lambda problem: problem.line)

    merged: dict[str, dict[str, _AttributeValue]] = {}
    for candidate in accepted:
        attributes = merged.setdefault(candidate.sku, {})
        for column, value in candidate.attributes.items():
            attributes.setdefault(column, value)
    records_by_sku = {sku: _sku_record(sku, attributes) for sku, attributes in merged.items()}
    rows = [ManifestRow(c.line, c.image, c.image_text, records_by_sku[c.sku]) for c in accepted]
    return Manifest(path=path, rows=rows, problems=problems, warnings=warnings)


def _read_records(path: Path) -> tuple[int, list[str], list[tuple[int, list[str]]]]:
    """Return the header (with its line number) and the non-blank data rows.

    Each row is tagged with the file line it starts on; a quoted field may span
    lines, so that is not simply a row counter.
    """
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = _numbered_rows(handle, path)
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(f"manifest {path} is not UTF-8 text: {exc.reason}") from exc
    if not rows:
        raise ManifestError(f"manifest {path} is empty; expected a header line")
    (header_line, header), *data = rows
    return header_line, header, data


def _numbered_rows(handle: TextIO, path: Path) -> list[tuple[int, list[str]]]:
    reader = csv.reader(handle)
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for cells in reader:
            line, start = start, reader.line_num + 1
            if any(cell.strip() for cell in cells):
                rows.append((line, cells))
    except csv.Error as exc:
        raise ManifestError(f"{path}, line {reader.line_num}: not valid CSV: {exc}") from exc
    return rows


def _map_header(header: list[str], line: int, path: Path) -> tuple[dict[str, int], list[str]]:
    """Map known column names to positions; unknown ones become warnings."""
    columns: dict[str, int] = {}
    warnings: list[str] = []
    for index, raw in enumerate(header):
        name = raw.strip().lower()
        if name in KNOWN_COLUMNS:
            if name in columns:
                raise ManifestError(f"{path}, line {line}: column {name!r} appears twice")
            columns[name] = index
        elif name:
            warnings.append(f"unknown column {raw.strip()!r} ignored")
        else:
            warnings.append(f"column {index + 1} has no name; ignored")
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise ManifestError(
            f"{path}, line {line}: missing required column(s): {', '.join(missing)}"
        )
    return columns, warnings


def _cell(cells: list[str], index: int | None) -> str:
    if index is None or index >= len(cells):
        return ""
    return cells[index]


def _parse_row(
    line: int,
    cells: list[str],
    columns: dict[str, int],
    header_width: int,
    folder: Path,
) -> tuple[_Candidate | None, list[str]]:
    """Check one row on its own; return a candidate or the reasons it was rejected."""
    messages: list[str] = []
    if len(cells) > header_width and any(cell.strip() for cell in cells[header_width:]):
        messages.append(
            f"row has {len(cells)} fields but the header has {header_width} (an unquoted comma?)"
        )

    image_text = _cell(cells, columns["image"])
    image: Path | None = None
    if not image_text.strip():
        messages.append("image is empty")
    else:
        image, message = _resolve_image(image_text, folder)
        if message:
            messages.append(message)

    sku = _cell(cells, columns["sku"])
    messages.extend(_sku_problems(sku))

    attributes: dict[str, _AttributeValue] = {}
    for column in ("name", "brand", "family"):
        text = _cell(cells, columns.get(column)).strip()
        if text:
            attributes[column] = text

    barcode = _cell(cells, columns.get("barcode")).strip()
    if barcode:
        if not (barcode.isascii() and barcode.isdigit()):
            messages.append(f"barcode {barcode!r} is not all digits")
        elif len(barcode) not in BARCODE_LENGTHS:
            lengths = ", ".join(str(n) for n in sorted(BARCODE_LENGTHS))
            messages.append(f"barcode {barcode!r} has {len(barcode)} digits, expected {lengths}")
        else:
            attributes["barcode"] = barcode

    for column in ("weight_g", "weight_tol_g"):
        text = _cell(cells, columns.get(column)).strip()
        if not text:
            continue
        value, message = _parse_weight(column, text)
        if message:
            messages.append(message)
        else:
            attributes[column] = value
    if (
        _cell(cells, columns.get("weight_tol_g")).strip()
        and not _cell(cells, columns.get("weight_g")).strip()
    ):
        messages.append("weight_tol_g is given without weight_g")

    if messages or image is None:
        return None, messages
    return _Candidate(line, image, image_text, sku, attributes), []


def _resolve_image(text: str, folder: Path) -> tuple[Path | None, str]:
    # Windows exports use backslashes; a backslash in a real file name is far
    # rarer than a manifest written on Windows.
    try:
        return (folder / text.replace("\\", "/")).resolve(), ""
    except (OSError, ValueError) as exc:
        return None, f"image path {text!r} is not usable: {exc}"


def _sku_problems(sku: str) -> list[str]:
    if not sku:
        return ["sku is empty"]
    problems: list[str] = []
    if len(sku) > MAX_SKU_LENGTH:
        problems.append(f"sku is {len(sku)} characters long, at most {MAX_SKU_LENGTH} allowed")
    # Whitespace and invisible characters make SKUs that look equal but are
    # not, which is how duplicate catalogue entries are born.
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in sku):
        problems.append(f"sku {sku!r} contains whitespace or control characters")
    return problems


def _parse_weight(column: str, text: str) -> tuple[float, str]:
    try:
        value = float(text)
    except ValueError:
        return 0.0, f"{column} {text!r} is not a number"
    if math.isnan(value):
        return 0.0, f"{column} is NaN"
    if math.isinf(value):
        return 0.0, f"{column} {text!r} is not finite"
    if value < 0:
        return 0.0, f"{column} {text!r} is negative"
    return value, ""


def _check_across_rows(
    candidates: list[_Candidate],
) -> tuple[list[_Candidate], list[ManifestProblem]]:
    """Reject repeated (image, sku) pairs and rows contradicting an earlier row's attributes.

    The first accepted row to give a SKU attribute a value fixes it; a later
    row giving a different value is rejected, naming the column and the line
    that fixed it. An empty cell gives no value, so attributes may be written
    on the first row of a SKU only.
    """
    accepted: list[_Candidate] = []
    problems: list[ManifestProblem] = []
    seen_pairs: dict[tuple[Path, str], int] = {}
    established: dict[str, dict[str, tuple[_AttributeValue, int]]] = {}
    for candidate in candidates:
        messages: list[str] = []
        pair = (candidate.image, candidate.sku)
        if pair in seen_pairs:
            messages.append(
                f"image {candidate.image_text!r} is already listed for SKU "
                f"{candidate.sku!r} on line {seen_pairs[pair]}"
            )
        fixed = established.get(candidate.sku, {})
        for column, value in candidate.attributes.items():
            if column in fixed and fixed[column][0] != value:
                earlier, earlier_line = fixed[column]
                messages.append(
                    f"{column} {value!r} conflicts with {earlier!r} given for SKU "
                    f"{candidate.sku!r} on line {earlier_line}"
                )
        if messages:
            problems.append(
                ManifestProblem(candidate.line, candidate.image_text, "; ".join(messages))
            )
            continue
        seen_pairs[pair] = candidate.line
        sku_fixed = established.setdefault(candidate.sku, {})
        for column, value in candidate.attributes.items():
            sku_fixed.setdefault(column, (value, candidate.line))
        accepted.append(candidate)
    return accepted, problems


def _sku_record(sku: str, attributes: dict[str, _AttributeValue]) -> SkuRecord:
    def text(column: str) -> str | None:
        value = attributes.get(column)
        return None if value is None else str(value)

    def number(column: str) -> float | None:
        value = attributes.get(column)
        return None if value is None else float(value)

    return SkuRecord(
        sku=sku,
        name=text("name") or "",
        barcode=text("barcode"),
        brand=text("brand"),
        family=text("family"),
        weight_g=number("weight_g"),
        weight_tol_g=number("weight_tol_g"),
    )
