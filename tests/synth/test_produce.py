"""Tests for loose produce in the synthetic catalogue.

The cart's produce path (camera plus scale, ranked suggestions, no scan) is
exercised on these SKUs, so what is checked here is what that path relies
on: produce rows carry no barcode, brand or unit weight and a family the
runtime treats as sold by weight; the packaged part of a catalogue does not
move when produce is added; output is deterministic; and different produce
is far enough apart in the shipped embedding's space to be told apart.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from cartos.catalog.manifest import read_manifest
from cartos.errors import CartosError
from cartos.fusion.catalogue_view import SOLD_BY_WEIGHT_FAMILIES, CatalogueView
from cartos.inference.embedder import Embedder
from cartos.synth import (
    MAX_PRODUCE_SKUS,
    PRODUCE_FAMILY,
    PRODUCE_KINDS,
    ProduceShape,
    SynthCatalogue,
    SynthConfig,
    SynthError,
    design_produce,
    generate_catalogue,
    produce_designs,
    reference_counts,
)
from cartos.synth.design import DOMAIN_PRODUCE_POPULARITY

BASE = SynthConfig(
    n_skus=4, refs_per_sku=2, queries_per_sku=2, n_new=1, new_queries_per_sku=1, seed=11
)
WITH_PRODUCE = replace(BASE, n_produce=3)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> SynthCatalogue:
    return generate_catalogue(tmp_path_factory.mktemp("plain"), BASE)


@pytest.fixture(scope="module")
def produce(tmp_path_factory: pytest.TempPathFactory) -> SynthCatalogue:
    return generate_catalogue(tmp_path_factory.mktemp("produce"), WITH_PRODUCE)


def test_produce_is_off_by_default(plain: SynthCatalogue) -> None:
    assert SynthConfig().n_produce == 0
    assert plain.produce == []
    rows = _rows(plain.manifest) + _rows(plain.queries)
    assert all(r["barcode"] and r["family"] != PRODUCE_FAMILY for r in rows)
    assert not [p for p in (plain.root / "images").iterdir() if p.name.startswith("P")]


def test_produce_rows_are_sold_by_weight_without_barcode(produce: SynthCatalogue) -> None:
    ids = [d.sku_id for d in produce.produce]
    assert ids == ["P0001", "P0002", "P0003"]
    assert not set(ids) & {s.sku_id for s in produce.skus + produce.new_skus}
    assert PRODUCE_FAMILY in SOLD_BY_WEIGHT_FAMILIES
    names = {d.sku_id: d.name for d in produce.produce}
    assert len(set(names.values())) == 3
    for path, per_sku in ((produce.manifest, BASE.refs_per_sku), (produce.queries, 2)):
        rows = [r for r in _rows(path) if r["sku"] in names]
        assert Counter(r["sku"] for r in rows) == dict.fromkeys(ids, per_sku), path.name
        for row in rows:
            assert row["barcode"] == "" and row["brand"] == ""
            assert row["weight_g"] == "" and row["weight_tol_g"] == ""
            assert row["family"] == PRODUCE_FAMILY
            assert row["name"] == names[row["sku"]] and row["name"].startswith("Loose ")
            assert row["image"].startswith(f"images/{row['sku']}/")
    for design in produce.produce:
        assert design.barcode == "" and design.brand == ""
        assert design.weight_g is None and design.weight_tol_g is None


def test_produce_rows_follow_packaged_rows(produce: SynthCatalogue) -> None:
    for path in (produce.manifest, produce.queries):
        families = [r["family"] == PRODUCE_FAMILY for r in _rows(path)]
        first = families.index(True)
        assert all(families[first:]) and not any(families[:first]), path.name


def test_produce_images_decode_with_sane_sizes(produce: SynthCatalogue) -> None:
    paths = [produce.root / r["image"] for r in _rows(produce.manifest) + _rows(produce.queries)]
    paths = [p for p in paths if p.parent.name.startswith("P")]
    assert len(paths) == 3 * (BASE.refs_per_sku + BASE.queries_per_sku)
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert image is not None, path
        h, w, channels = image.shape
        assert channels == 3
        assert min(h, w) >= 48 and 140 <= max(h, w) <= 280, (path, image.shape)
        assert float(image.std()) > 10.0, "an image should not be a flat colour"


def test_packaged_part_does_not_depend_on_n_produce(
    plain: SynthCatalogue, produce: SynthCatalogue
) -> None:
    before, after = _tree(plain.root), _tree(produce.root)
    for name, data in before.items():
        if name in ("manifest.csv", "queries.csv"):
            continue
        assert after[name] == data, name
    extra = set(after) - set(before)
    assert extra and all(name.split("/")[1].startswith("P") for name in extra)
    for path in ("manifest.csv", "queries.csv"):
        old = (plain.root / path).read_bytes().splitlines()
        new = (produce.root / path).read_bytes().splitlines()
        assert new[: len(old)] == old, path
    assert produce.skus == plain.skus and produce.new_skus == plain.new_skus


def test_same_seed_gives_identical_produce(tmp_path: Path, produce: SynthCatalogue) -> None:
    again = generate_catalogue(tmp_path / "again", WITH_PRODUCE)
    assert _tree(again.root) == _tree(produce.root)
    assert again.produce == produce.produce


def test_other_seed_gives_other_produce_images(tmp_path: Path, produce: SynthCatalogue) -> None:
    other = generate_catalogue(tmp_path / "other", replace(WITH_PRODUCE, seed=12))
    image = "images/P0001/ref_00.jpg"
    assert (other.root / image).read_bytes() != (produce.root / image).read_bytes()


def test_references_and_queries_are_different_piles(produce: SynthCatalogue) -> None:
    folder = produce.root / "images" / "P0001"
    shots = [(folder / name).read_bytes() for name in ("ref_00.jpg", "ref_01.jpg", "query_00.jpg")]
    assert len(set(shots)) == 3


def test_manifest_imports_as_sold_by_weight_items(produce: SynthCatalogue) -> None:
    manifest = read_manifest(produce.manifest)
    assert manifest.problems == []
    view = CatalogueView.from_records(manifest.skus)
    for design in produce.produce:
        item = view.get(design.sku_id)
        assert item is not None
        assert item.sold_by_weight and item.weight_g is None and not item.barcode_keys
        assert item.name == design.name
    for sku in produce.skus:
        packaged = view.get(sku.sku_id)
        assert packaged is not None and not packaged.sold_by_weight


def test_long_tail_applies_to_produce_on_its_own(tmp_path: Path) -> None:
    config = replace(BASE, refs_per_sku=4, long_tail_ratio=4.0, queries_per_sku=0, n_new=0)
    without = generate_catalogue(tmp_path / "without", config)
    with_produce = generate_catalogue(tmp_path / "with", replace(config, n_produce=4))
    old = _rows(without.manifest)
    new = _rows(with_produce.manifest)
    assert new[: len(old)] == old
    counts = Counter(r["sku"] for r in new[len(old) :])
    expected = reference_counts(
        config.seed, with_produce.produce, 4, 4.0, domain=DOMAIN_PRODUCE_POPULARITY
    )
    assert [counts[d.sku_id] for d in with_produce.produce] == expected
    assert max(expected) == 4 and min(expected) == 1


def test_designs_are_stable_distinct_and_mix_shapes() -> None:
    designs = produce_designs(seed=5, n_produce=MAX_PRODUCE_SKUS)
    assert designs[:7] == produce_designs(seed=5, n_produce=7)
    assert design_produce(5, 9) == designs[9]
    assert [d.sku_id for d in designs[:2]] == ["P0001", "P0002"]
    assert len({d.sku_id for d in designs}) == len({d.name for d in designs}) == MAX_PRODUCE_SKUS
    for start in range(len(designs) - 3):
        assert {d.shape for d in designs[start : start + 4]} == set(ProduceShape)
    organic = [d for d in designs if d.organic]
    assert organic and all(d.name.startswith("Loose organic ") for d in organic)
    assert min(d.slot for d in organic) >= len(PRODUCE_KINDS), "every kind comes first"
    assert produce_designs(seed=6, n_produce=4) != produce_designs(seed=5, n_produce=4)


@pytest.mark.parametrize("value", [-1, MAX_PRODUCE_SKUS + 1])
def test_invalid_n_produce_is_rejected(tmp_path: Path, value: int) -> None:
    with pytest.raises(SynthError, match="n_produce") as info:
        generate_catalogue(tmp_path / "out", replace(BASE, n_produce=value))
    assert isinstance(info.value, CartosError) and info.value.exit_code == 2
    assert not (tmp_path / "out").exists(), "nothing is written for a bad config"
    with pytest.raises(SynthError, match="n_produce"):
        produce_designs(seed=0, n_produce=value)


def test_produce_is_recognisable_by_the_shipped_embedding(
    tmp_path: Path, embedder: Embedder
) -> None:
    """Nearest-prototype top-1 over produce queries, among produce SKUs only.

    Four SKUs make chance 0.25; the bar of 0.6 leaves room for the hard
    shots (hands, glare, blur) while failing if piles stop looking distinct.
    """
    config = SynthConfig(n_skus=1, refs_per_sku=4, queries_per_sku=4, n_new=0, n_produce=4, seed=3)
    catalogue = generate_catalogue(tmp_path / "cat", config)

    def embed(path: Path) -> tuple[list[str], np.ndarray]:
        rows = [r for r in _rows(path) if r["family"] == PRODUCE_FAMILY]
        result = embedder.embed_paths([catalogue.root / r["image"] for r in rows])
        assert result.errors == {}
        return [r["sku"] for r in rows], result.vectors

    ref_skus, ref_vectors = embed(catalogue.manifest)
    query_skus, query_vectors = embed(catalogue.queries)
    skus = [d.sku_id for d in catalogue.produce]
    prototypes = np.stack([ref_vectors[[s == sku for s in ref_skus]].mean(axis=0) for sku in skus])
    prototypes /= np.linalg.norm(prototypes, axis=1, keepdims=True)
    predicted = [skus[int(i)] for i in (query_vectors @ prototypes.T).argmax(axis=1)]
    assert len(query_skus) == 16
    accuracy = float(np.mean([p == q for p, q in zip(predicted, query_skus, strict=True)]))
    assert accuracy >= 0.6, (accuracy, list(zip(query_skus, predicted, strict=True)))
