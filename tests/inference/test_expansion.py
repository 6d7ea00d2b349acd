"""``cartos catalog plan-add``: collisions, neighbour impact and thin references predicted
before new SKUs go live, without touching the live catalogue."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cartos.catalog.records import SkuRecord
from cartos.catalog.store import CatalogStore
from cartos.inference.embedder import l2_normalise
from cartos.inference.enrolment import _refresh_prototypes
from cartos.inference.errors import InferenceError
from cartos.inference.expansion import PlanSettings, plan_expansion
from cartos.inference.index import CatalogueSnapshot


def _refs(centre: np.ndarray, n: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return l2_normalise(centre + noise * rng.normal(size=(n, centre.size))).astype(np.float32)


@pytest.fixture()
def catalogue(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """Twelve SKUs of four tight references each (cosine ~0.8 to their centre)."""
    path = tmp_path / "catalogue.db"
    centres = l2_normalise(np.random.default_rng(2).normal(size=(12, 1280))).astype(np.float32)
    with CatalogStore(path) as store, store.change("import", "planner test catalogue"):
        for i, centre in enumerate(centres):
            sku = f"sku-{i:03d}"
            store.upsert_sku(SkuRecord(sku, family=f"fam-{i // 4}"))
            store.add_exemplars(sku, _refs(centre, 4, 0.02, 100 + i),
                                [f"ref/{sku}/{j}.jpg" for j in range(4)])
        _refresh_prototypes(store, [f"sku-{i:03d}" for i in range(12)])
    return path, centres


def test_a_near_duplicate_collides_and_a_distinct_sku_does_not(
    catalogue: tuple[Path, np.ndarray]
) -> None:
    path, centres = catalogue
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with CatalogStore(path) as store:
        snapshot = CatalogueSnapshot.from_store(store)
        version = store.version
    far = l2_normalise(np.random.default_rng(9).normal(size=(1, centres.shape[1])))[0]
    new = [SkuRecord("twin-of-003", family="fam-0"), SkuRecord("distinct"),
           SkuRecord("thin", family="fam-9")]
    vectors = {"twin-of-003": _refs(centres[3], 4, 0.015, 201),
               "distinct": _refs(far, 4, 0.015, 202),
               "thin": _refs(np.roll(far, 7), 1, 0.02, 203)}
    plan = plan_expansion(snapshot, new, vectors, PlanSettings(min_references=3))
    by = {n.sku: n for n in plan.new}
    twin, distinct, thin = by["twin-of-003"], by["distinct"], by["thin"]
    assert twin.nearest == "sku-003" and twin.collision and twin.similarity_percentile == 100.0
    assert not distinct.collision and distinct.self_recognised == 1.0
    assert distinct.needs_more_references == []
    assert any("fewer than 3" in why for why in thin.needs_more_references)
    # The existing SKU the twin sits on loses answers; the plan says so.
    impact = {m.sku: m for m in plan.neighbours}["sku-003"]
    assert "twin-of-003" in impact.near and impact.drop > 0
    assert plan.to_dict()["collisions"] == 1
    # The live catalogue was only read.
    with CatalogStore(path) as store:
        assert store.version == version and store.get_sku("twin-of-003") is None
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_skus_already_live_or_nothing_at_all_are_refused(
    catalogue: tuple[Path, np.ndarray]
) -> None:
    path, centres = catalogue
    with CatalogStore(path) as store:
        snapshot = CatalogueSnapshot.from_store(store)
    with pytest.raises(InferenceError, match="already in the catalogue"):
        plan_expansion(snapshot, [SkuRecord("sku-001")], {"sku-001": _refs(centres[1], 3, .1, 0)})
    with pytest.raises(InferenceError, match="nothing to plan"):
        plan_expansion(snapshot, [], {})


def test_the_cli_plans_real_images_against_an_imported_catalogue(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    run = [sys.executable, "-m", "cartos"]
    subprocess.run([*run, "synth", "--skus", "8", "--refs", "3", "--queries", "1",
                    "--unknown", "2", "--seed", "4", "--out", str(out)], check=True,
                   capture_output=True, timeout=120)
    db = tmp_path / "catalogue.db"
    subprocess.run([*run, "catalog", "import", str(out / "references.csv"), "--db", str(db)],
                   check=True, capture_output=True, timeout=300)
    with CatalogStore(db) as store:
        version = store.version
    proc = subprocess.run([*run, "catalog", "plan-add", str(out / "unknown.csv"), "--db", str(db),
                           "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(plan["new"]) == 2
    for n in plan["new"]:
        assert n["nearest"].startswith("syn-") and -1.0 <= n["similarity"] <= 1.0
        assert 0 <= n["similarity_percentile"] <= 100
        assert any("fewer than 3" in why for why in n["needs_more_references"])  # 1 image each
    with CatalogStore(db) as store:
        assert store.version == version
    table = subprocess.run([*run, "catalog", "plan-add", str(out / "unknown.csv"), "--db",
                            str(db)], capture_output=True, text=True, timeout=300)
    assert table.returncode == 0 and "| new SKU |" in table.stdout
