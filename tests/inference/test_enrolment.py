"""Manifest import, few-shot add, discontinue and rebuild on a real SQLite catalogue."""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from cartos.catalog.errors import CatalogError, UnknownSkuError
from cartos.catalog.records import SkuRecord
from cartos.catalog.store import CatalogStore
from cartos.cli.inputs import expand_inputs
from cartos.inference import enrolment
from cartos.inference.calibration import POSTERIOR_TOP_K
from cartos.inference.embedder import Embedder
from cartos.inference.errors import ModelMismatchError
from cartos.inference.recognizer import Recognition, Recognizer
from tests.inference.conftest import Prepared


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _write(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    return path


def _recognise(db: Path, embedder: Embedder, images: list[Path]) -> list[Recognition]:
    vectors = embedder.embed_paths(images).vectors
    with CatalogStore(db) as store:
        rec = Recognizer.from_store(store, top_k=POSTERIOR_TOP_K)
    return rec.recognize_vectors(vectors)


def _answers(
    db: Path, embedder: Embedder, images: list[Path]
) -> list[tuple[str, str | None, float]]:
    return [(a.decision, a.sku, a.confidence) for a in _recognise(db, embedder, images)]


def test_import_is_idempotent(prepared: Prepared, catalogue_copy: Path, embedder: Embedder) -> None:
    with CatalogStore(catalogue_copy) as store:
        version = store.version
        protos = store.prototypes("sku")
        report = enrolment.import_manifest(store, embedder, prepared.synth.manifest)
        assert report.exemplars_added == 0
        assert report.skus_added == 0 and report.skus_updated == 0
        assert report.exemplars_skipped == len(_rows(prepared.synth.manifest))
        assert store.version == version  # nothing changed: no new version
        np.testing.assert_array_equal(store.prototypes("sku")[1], protos[1])


def test_broken_and_missing_images_are_reported_by_row_and_skipped(
    prepared: Prepared, tmp_path: Path, embedder: Embedder
) -> None:
    rows = _rows(prepared.synth.manifest)
    root = prepared.synth.manifest.parent
    header = [*rows[0].keys(), "aisle"]
    fixed = [{**r, "image": str(root / r["image"]), "aisle": "7"} for r in rows]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff garbage")
    fixed[1]["image"] = str(corrupt)  # line 3
    fixed[2]["image"] = str(tmp_path / "missing.jpg")  # line 4
    manifest = _write(tmp_path / "m.csv", header, fixed)
    db = tmp_path / "c.db"
    with CatalogStore(db) as store:
        report = enrolment.import_manifest(store, embedder, manifest)
        lines = sorted(p.line for p in report.problems)
        assert lines == [3, 4]
        assert any("aisle" in w for w in report.warnings)
        assert report.exemplars_added == len(rows) - 2
        assert sum(store.exemplar_counts().values()) == len(rows) - 2
        # the broken rows' SKUs still exist when they have other good images
        assert store.get_sku(rows[1]["sku"]) is not None
        assert store.version == 1  # one atomic change


def test_import_never_half_applies(
    prepared: Prepared, tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "c.db"
    with CatalogStore(db) as store:

        def boom(*_: object, **__: object) -> None:
            raise RuntimeError("power cut")

        monkeypatch.setattr(enrolment, "_refresh_prototypes", boom)
        with pytest.raises(RuntimeError):
            enrolment.import_manifest(store, embedder, prepared.synth.manifest)
        assert store.version == 0
        assert store.list_skus(status=None) == []
        assert len(store.exemplars()) == 0


def test_add_sku_is_fast_and_leaves_other_answers_unchanged(
    prepared: Prepared, catalogue_copy: Path, embedder: Embedder
) -> None:
    queries = [i.path for i in expand_inputs([prepared.test_manifest])]
    before = _recognise(catalogue_copy, embedder, queries)
    new_rows = _rows(prepared.synth.new_products)
    sku = new_rows[0]["sku"]
    images = [prepared.synth.new_products.parent / r["image"] for r in new_rows if r["sku"] == sku]
    with CatalogStore(catalogue_copy) as store:
        protos_before = dict(zip(*store.prototypes("sku")[:2], strict=True))
        start = time.perf_counter()
        report = enrolment.add_sku(
            store, embedder, SkuRecord(sku=sku, name="new thing", family="newfam"), images[:2]
        )
        elapsed = time.perf_counter() - start
        assert report.exemplars_added == 2
        keys, matrix, _ = store.prototypes("sku")
        protos_after = dict(zip(keys, matrix, strict=True))
        assert sku in protos_after
        for k, v in protos_before.items():
            np.testing.assert_array_equal(protos_after[k], v)  # nobody else's prototype moved
    assert elapsed < 5.0  # generous: the benchmark measures the real figure
    after = _recognise(catalogue_copy, embedder, queries)
    # Answers are local: decision, SKU and confidence depend only on a query's two
    # best SKUs, the family/brand hint only on its ten best; every other answer is
    # unchanged. "Unchanged" is up to float32 rounding: BLAS may block a score matrix
    # with one more row differently and move the last bit of a dot product.
    untouched = 0
    for b, a in zip(before, after, strict=True):
        ranked = [c.sku for c in a.topk]
        if sku not in ranked[:2]:
            assert (a.decision, a.sku, a.level) == (b.decision, b.sku, b.level)
            assert a.confidence == pytest.approx(b.confidence, abs=1e-6)
            assert a.unknown_score == pytest.approx(b.unknown_score, abs=1e-6)
        if sku in ranked:
            continue
        untouched += 1
        a_dict, b_dict = a.to_dict(), b.to_dict()
        assert a_dict.pop("catalog_version") == b_dict.pop("catalog_version") + 1
        assert _same(a_dict, b_dict), (a_dict, b_dict)
    assert untouched >= len(queries) // 4


def _same(a: object, b: object, tol: float = 1e-6) -> bool:
    """Structural equality with floats compared to ``tol`` (float32 rounding)."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= tol
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], tol) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y, tol) for x, y in zip(a, b, strict=True))
    return a == b


def test_add_sku_rejects_bad_inputs(
    catalogue_copy: Path, embedder: Embedder, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    with CatalogStore(catalogue_copy) as store:
        version = store.version
        with pytest.raises(CatalogError, match="none of the images"):
            enrolment.add_sku(store, embedder, SkuRecord(sku="x-1"), [bad])
        with pytest.raises(CatalogError, match="1 to 50"):
            enrolment.add_sku(store, embedder, SkuRecord(sku="x-1"), [])
        assert store.version == version


def test_discontinue_removes_sku_from_answers_and_records_successor(
    prepared: Prepared, catalogue_copy: Path, embedder: Embedder
) -> None:
    rows = _rows(prepared.test_manifest)
    target = rows[0]["sku"]
    successor = next(r["sku"] for r in rows if r["sku"] != target)
    own = [prepared.test_manifest.parent / r["image"] for r in rows if r["sku"] == target]
    before = _answers(catalogue_copy, embedder, own)
    assert any(sku == target for _, sku, _ in before)
    with CatalogStore(catalogue_copy) as store:
        enrolment.discontinue(store, target, successor)
        rec = store.get_sku(target)
        assert rec is not None and rec.status == "discontinued" and rec.successor == successor
        assert target not in store.prototypes("sku")[0]
        with pytest.raises(UnknownSkuError):
            enrolment.discontinue(store, "no-such-sku")
    after = _answers(catalogue_copy, embedder, own)
    for _, sku, _ in after:
        assert sku != target
    with CatalogStore(catalogue_copy) as store:
        rec = Recognizer.from_store(store)
        assert target not in rec.index.skus
        # re-importing the original export does not bring it back
        enrolment.import_manifest(store, embedder, prepared.synth.manifest)
        again = store.get_sku(target)
        assert again is not None and again.status == "discontinued"
        assert target not in Recognizer.from_store(store).index.skus


def test_rebuild_is_an_explicit_version_and_marks_calibration_stale(
    catalogue_copy: Path,
) -> None:
    with CatalogStore(catalogue_copy) as store:
        assert Recognizer.from_store(store).calibration is not None
        v = store.version
        assert enrolment.rebuild(store) == v + 1
        assert store.history()[-1].kind == "rebuild"
        assert Recognizer.from_store(store).calibration is None


def test_mixing_embedding_spaces_is_refused(catalogue_copy: Path, prepared: Prepared) -> None:
    other = Embedder(views=("orig",))
    with (
        CatalogStore(catalogue_copy) as store,
        pytest.raises(ModelMismatchError, match="embedded with"),
    ):
        enrolment.import_manifest(store, other, prepared.synth.manifest)


def test_manifest_copy_with_relative_paths_imports(
    prepared: Prepared, tmp_path: Path, embedder: Embedder
) -> None:
    # A manifest is portable: copy it with its images and import from the new place.
    dest = tmp_path / "moved"
    shutil.copytree(prepared.synth.root / "images", dest / "images")
    shutil.copyfile(prepared.synth.manifest, dest / "manifest.csv")
    with CatalogStore(tmp_path / "m.db") as store:
        report = enrolment.import_manifest(store, embedder, dest / "manifest.csv")
    assert report.problems == []
    assert report.exemplars_added == len(_rows(prepared.synth.manifest))


def test_import_killed_mid_transaction_leaves_previous_version(
    prepared: Prepared, catalogue_copy: Path, tmp_path: Path, embedder: Embedder
) -> None:
    """kill -9 while an import holds its write transaction: the catalogue is intact."""
    import os
    import signal
    import sqlite3
    import subprocess
    import sys

    ready = tmp_path / "inside-transaction"
    script = f"""
import time
from pathlib import Path
from cartos.catalog.store import CatalogStore
from cartos.inference import enrolment
from cartos.inference.embedder import Embedder

real = enrolment._refresh_prototypes
def stall(store, skus):
    real(store, skus)
    Path({str(ready)!r}).write_text("x")
    time.sleep(60)
enrolment._refresh_prototypes = stall
rows = Path({str(prepared.synth.new_products)!r})
with CatalogStore({str(catalogue_copy)!r}) as store:
    enrolment.import_manifest(store, Embedder(), rows)
"""
    with CatalogStore(catalogue_copy) as store:
        version = store.version
        n_exemplars = len(store.exemplars())
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, "importer exited early"
            assert time.monotonic() < deadline
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    conn = sqlite3.connect(catalogue_copy)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with CatalogStore(catalogue_copy) as store:
        assert store.version == version
        assert len(store.exemplars()) == n_exemplars
        new_skus = {r["sku"] for r in _rows(prepared.synth.new_products)}
        assert not new_skus & {r.sku for r in store.list_skus(status=None)}
        # the dead writer's lock is gone: the same import now goes through
        report = enrolment.import_manifest(store, embedder, prepared.synth.new_products)
        assert store.version == version + 1
        assert {r.sku for r in store.list_skus()} >= new_skus
        assert report.exemplars_added == len(_rows(prepared.synth.new_products))
