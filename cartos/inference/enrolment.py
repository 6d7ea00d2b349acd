"""Putting SKUs into a catalogue: manifest import, few-shot add, discontinue, rebuild.

All of these are single catalogue changes: the images are decoded and
embedded *before* the transaction opens, broken images are reported by row and
left out, and what remains is written atomically with its prototypes. A crash
half way leaves the previous catalogue version intact.

Prototypes are stored in the raw embedding space (the mean of a SKU's unit
exemplars; family and brand prototypes are means of their SKUs' prototypes),
so adding a SKU writes only its own prototype and its family/brand rows; the
shared projection is refitted only by :func:`rebuild`, an explicit version.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cartos.catalog.errors import CatalogError
from cartos.catalog.manifest import read_manifest
from cartos.catalog.records import SkuRecord
from cartos.catalog.store import CatalogStore
from cartos.inference.catalogue_model import check_signature, record_model
from cartos.inference.embedder import Embedder
from cartos.inference.index import PROJECTION_ARTIFACT
from cartos.inference.projection import DEFAULT_SHRINKAGE, MIN_CLASSES_TO_FIT, fit_projection

MAX_ADD_IMAGES = 50


@dataclass
class RowProblem:
    line: int
    image: str
    message: str


@dataclass
class ImportReport:
    """What an import did, for the CLI and for tests."""

    catalog_version: int = 0
    skus_added: int = 0
    skus_updated: int = 0
    exemplars_added: int = 0
    exemplars_skipped: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    projection_fitted: bool = False


def embed_items(
    embedder: Embedder,
    items: Sequence[tuple[int, Path, str]],
    progress: bool,
) -> tuple[dict[int, np.ndarray], list[RowProblem]]:
    """Decode + embed in small batches; returns vectors by item key and per-row problems."""
    vectors: dict[int, np.ndarray] = {}
    problems: list[RowProblem] = []
    bar = tqdm(total=len(items), unit="img", disable=not progress, leave=False)
    chunk = 16  # bounds memory: decoded crops are dropped after every chunk
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        result = embedder.embed_paths([path for _, path, _ in part])
        for i, message in result.errors.items():
            key, _, text = part[i]
            problems.append(RowProblem(key, text, message))
        for i, vec in zip(result.ok_index, result.vectors, strict=True):
            vectors[part[i][0]] = vec
        bar.update(len(part))
    bar.close()
    return vectors, problems


def _refresh_prototypes(store: CatalogStore, skus: Iterable[str],
                        also_groups: Mapping[str, Iterable[str]] | None = None) -> None:
    """Recompute SKU prototypes for ``skus`` and the family/brand rows they touch.

    The SKU prototype table is read once, after the SKU rows are written, and shared by
    both group levels: on a 10k-SKU catalogue each full read is ~50 MB of vectors, and a
    shopper's correction runs this on the cart. ``also_groups`` (``{"family": …, "brand":
    …}``) names groups to refresh besides the SKUs' current ones: those a SKU just left.
    """
    touched = sorted(set(skus))
    if not touched:
        return
    records = {r.sku: r for r in store.list_skus(status="active")}
    ex = store.exemplars(skus=touched)
    by_sku: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(ex.skus):
        by_sku[s].append(i)
    # Only active SKUs with exemplars have a prototype; anything else loses its row.
    live = [s for s in touched if by_sku.get(s) and s in records]
    if live:
        protos = np.stack([ex.vectors[by_sku[s]].mean(axis=0) for s in live])
        store.put_prototypes("sku", live, protos, [len(by_sku[s]) for s in live])
    current = set(store.prototype_keys("sku"))
    dead = [s for s in touched if s not in live and s in current]
    if dead:
        store.delete_prototypes("sku", dead)
    touched_records = [r for s in touched if (r := store.get_sku(s)) is not None]
    sku_table: tuple[list[str], np.ndarray, list[int]] | None = None
    for level in ("family", "brand"):
        groups = sorted({g for r in touched_records if (g := getattr(r, level))}
                        | set((also_groups or {}).get(level, ())))
        if groups:
            if sku_table is None:
                sku_table = store.prototypes("sku")
            _refresh_group(store, level, groups, records, sku_table)


def _refresh_group(
    store: CatalogStore, level: str, groups: Sequence[str], records: dict[str, SkuRecord],
    sku_table: tuple[list[str], np.ndarray, list[int]],
) -> None:
    keys, matrix, _ = sku_table
    row = {k: i for i, k in enumerate(keys)}
    present, vectors, counts, gone = [], [], [], []
    for g in groups:
        members = [s for s, r in records.items() if getattr(r, level) == g and s in row]
        if members:
            present.append(g)
            vectors.append(matrix[[row[m] for m in members]].mean(axis=0))
            counts.append(len(members))
        else:
            gone.append(g)
    if present:
        store.put_prototypes(level, present, np.stack(vectors), counts)
    live = set(store.prototype_keys(level))
    gone = [g for g in gone if g in live]
    if gone:
        store.delete_prototypes(level, gone)


def _fit_projection_if_missing(store: CatalogStore) -> bool:
    if store.get_artifact(PROJECTION_ARTIFACT) is not None:
        return False
    records = store.list_skus(status="active")
    if len(records) < MIN_CLASSES_TO_FIT:
        return False
    ex = store.exemplars(skus=[r.sku for r in records])
    projection = fit_projection(ex.vectors, np.asarray(ex.skus))
    if not projection.fitted_classes:
        return False  # too few SKUs with repeated references: stay on plain cosine
    store.put_artifact(PROJECTION_ARTIFACT, projection.to_bytes())
    return True


def import_manifest(
    store: CatalogStore,
    embedder: Embedder,
    manifest_path: str | Path,
    progress: bool = False,
) -> ImportReport:
    """Idempotently import a retailer manifest into the catalogue."""
    check_signature(store, embedder)
    manifest = read_manifest(manifest_path)
    report = ImportReport(warnings=list(manifest.warnings))
    report.problems.extend(RowProblem(p.line, p.image, p.message) for p in manifest.problems)
    existing = store.exemplars(skus=sorted({r.sku.sku for r in manifest.rows}))
    have = set(zip(existing.skus, existing.sources, strict=True))
    todo = []
    for row in manifest.rows:
        if (row.sku.sku, row.image_text) in have:
            report.exemplars_skipped += 1
        else:
            todo.append(row)
    vectors, problems = embed_items(
        embedder, [(r.line, r.image, r.image_text) for r in todo], progress
    )
    report.problems.extend(problems)
    by_sku: dict[str, list[int]] = defaultdict(list)
    records: dict[str, SkuRecord] = {}
    for r in manifest.rows:
        records[r.sku.sku] = r.sku
    for i, r in enumerate(todo):
        if r.line in vectors:
            by_sku[r.sku.sku].append(i)
    with store.change("import", f"import {Path(manifest_path).name}"):
        record_model(store, embedder)
        for sku, rec in records.items():
            before = store.get_sku(sku)
            if before is None and not by_sku.get(sku):
                continue  # every image of a new SKU was broken: do not register it empty
            if before is not None:
                # Re-importing an old export must not undo a discontinuation.
                rec = replace(rec, status=before.status, successor=before.successor)
            if store.upsert_sku(rec):
                if before is None:
                    report.skus_added += 1
                else:
                    report.skus_updated += 1
        for sku, idx in by_sku.items():
            rows = [todo[i] for i in idx]
            report.exemplars_added += store.add_exemplars(
                sku, np.stack([vectors[r.line] for r in rows]), [r.image_text for r in rows]
            )
        _refresh_prototypes(store, by_sku)
        report.projection_fitted = _fit_projection_if_missing(store)
    report.catalog_version = store.version
    return report


def add_sku(
    store: CatalogStore,
    embedder: Embedder,
    record: SkuRecord,
    images: Sequence[str | Path],
    on_problem: Callable[[RowProblem], None] | None = None,
) -> ImportReport:
    """Register or extend one SKU from 1-50 reference images (few-shot enrolment)."""
    if not 1 <= len(images) <= MAX_ADD_IMAGES:
        raise CatalogError(f"give 1 to {MAX_ADD_IMAGES} images (got {len(images)})")
    check_signature(store, embedder)
    report = ImportReport()
    items = [(i, Path(p), str(p)) for i, p in enumerate(images)]
    vectors, problems = embed_items(embedder, items, progress=False)
    report.problems.extend(problems)
    if on_problem:
        for p in problems:
            on_problem(p)
    if not vectors:
        raise CatalogError(f"SKU {record.sku}: none of the images could be read")
    keys = sorted(vectors)
    existing = store.get_sku(record.sku)
    merged = record if existing is None else _merge(existing, record)
    with store.change("add", f"add {record.sku} ({len(keys)} images)"):
        record_model(store, embedder)
        if store.upsert_sku(merged):
            report.skus_added += existing is None
            report.skus_updated += existing is not None
        report.exemplars_added = store.add_exemplars(
            record.sku,
            np.stack([vectors[k] for k in keys]),
            [str(Path(images[k]).resolve()) for k in keys],
        )
        report.exemplars_skipped = len(keys) - report.exemplars_added
        _refresh_prototypes(store, [record.sku])
        report.projection_fitted = _fit_projection_if_missing(store)
    report.catalog_version = store.version
    return report


def _merge(old: SkuRecord, new: SkuRecord) -> SkuRecord:
    """Fields given on the command line win; unspecified ones keep their stored value."""
    return SkuRecord(
        sku=old.sku,
        name=new.name or old.name,
        barcode=new.barcode or old.barcode,
        brand=new.brand or old.brand,
        family=new.family or old.family,
        weight_g=new.weight_g if new.weight_g is not None else old.weight_g,
        weight_tol_g=new.weight_tol_g if new.weight_tol_g is not None else old.weight_tol_g,
        status="active",
        successor=None,
    )


def discontinue(store: CatalogStore, sku: str, successor: str | None = None) -> int:
    """Take a SKU out of recognition, recording its successor; returns the new version."""
    with store.change(
        "discontinue", f"discontinue {sku}" + (f" -> {successor}" if successor else "")
    ):
        store.discontinue(sku, successor)
        _refresh_prototypes(store, [sku])
    return store.version


def rebuild(
    store: CatalogStore, shrinkage: float = DEFAULT_SHRINKAGE, pca_dim: int | None = None
) -> int:
    """Refit the shared projection and every prototype: an explicit new version.

    Calibration fitted before a rebuild no longer describes the score scale;
    the recogniser reports it as stale until ``cartos calibrate`` runs again.
    """
    records = store.list_skus(status="active")
    ex = store.exemplars(skus=[r.sku for r in records])
    with store.change("rebuild", f"refit projection on {len(records)} SKUs"):
        if len(records) >= MIN_CLASSES_TO_FIT:
            projection = fit_projection(ex.vectors, np.asarray(ex.skus), shrinkage, pca_dim)
            store.put_artifact(PROJECTION_ARTIFACT, projection.to_bytes())
        _refresh_prototypes(store, [r.sku for r in records])
    return store.version
