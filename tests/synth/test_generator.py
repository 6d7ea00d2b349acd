"""Tests for the synthetic catalogue generator.

The demo and every other unit test build on these catalogues, so the
properties checked here (determinism, stable SKUs, valid barcodes, exact CSV
shape, decodable images) are the ones the rest of the suite silently relies on.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from cartos.errors import CartosError
from cartos.synth import (
    MANIFEST_HEADER,
    SynthCatalogue,
    SynthConfig,
    SynthError,
    catalogue_designs,
    ean13_check_digit,
    generate_catalogue,
    is_valid_ean13,
    query_style,
    reference_counts,
    reference_style,
    weight_tolerance_g,
)

EXPECTED_HEADER = ["image", "sku", "barcode", "name", "brand", "family", "weight_g", "weight_tol_g"]
SMALL = SynthConfig(
    n_skus=6, refs_per_sku=2, queries_per_sku=2, n_new=2, new_queries_per_sku=2, seed=7
)


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, [dict(zip(header, row, strict=True)) for row in reader]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _own_check_digit(body: str) -> int:
    """Independent EAN-13 check: weights 1,3,1,3,... from the left."""
    odd = sum(int(d) for d in body[0::2])
    even = sum(int(d) for d in body[1::2])
    return (10 - (odd + 3 * even) % 10) % 10


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> SynthCatalogue:
    return generate_catalogue(tmp_path_factory.mktemp("small"), SMALL)


def test_same_seed_gives_identical_bytes(tmp_path: Path, small: SynthCatalogue) -> None:
    again = generate_catalogue(tmp_path / "again", SMALL)
    first, second = _tree(small.root), _tree(again.root)
    assert first.keys() == second.keys()
    assert first == second


def test_other_seed_gives_other_images(tmp_path: Path, small: SynthCatalogue) -> None:
    other = generate_catalogue(tmp_path / "other", replace(SMALL, seed=8))
    image = "images/syn-00001/ref_00.jpg"
    assert (small.root / image).read_bytes() != (other.root / image).read_bytes()


def test_adding_skus_keeps_earlier_skus_identical(tmp_path: Path, small: SynthCatalogue) -> None:
    bigger = generate_catalogue(tmp_path / "bigger", replace(SMALL, n_skus=SMALL.n_skus + 4))
    before, after = _tree(small.root), _tree(bigger.root)
    images = [name for name in before if name.startswith("images/")]
    assert images
    for name in images:
        assert after[name] == before[name], name
    assert bigger.skus[: SMALL.n_skus] == small.skus
    _, rows_before = _rows(small.manifest)
    _, rows_after = _rows(bigger.manifest)
    assert rows_after[: len(rows_before)] == rows_before


def test_barcodes_are_valid_unique_ean13(small: SynthCatalogue) -> None:
    assert ean13_check_digit("400638133393") == 1  # a real, published EAN-13
    assert is_valid_ean13("4006381333931")
    assert not is_valid_ean13("4006381333932")
    skus = catalogue_designs(seed=3, n_skus=200, variants_per_line=4) + small.new_skus
    codes = [s.barcode for s in skus]
    assert len(set(codes)) == len(codes)
    for code in codes:
        assert len(code) == 13 and code.isdigit()
        assert int(code[-1]) == _own_check_digit(code[:12])
        assert is_valid_ean13(code)
        assert code[0] != "2", "prefix 2 is reserved for in-store variable-measure items"


def test_manifests_have_exact_header_and_counts(small: SynthCatalogue) -> None:
    assert list(MANIFEST_HEADER) == EXPECTED_HEADER
    expected = {
        small.manifest: SMALL.n_skus * SMALL.refs_per_sku,
        small.queries: SMALL.n_skus * SMALL.queries_per_sku,
        small.new_products: SMALL.n_new * SMALL.new_queries_per_sku,
    }
    for path, count in expected.items():
        assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(EXPECTED_HEADER)
        header, rows = _rows(path)
        assert header == EXPECTED_HEADER
        assert len(rows) == count, path.name
        for row in rows:
            assert not Path(row["image"]).is_absolute()
            assert (small.root / row["image"]).is_file()
            assert len(row["barcode"]) == 13  # kept as a string: no lost leading digits
            assert row["name"].startswith(f"{row['brand']} {row['family']} ")
            assert row["name"].endswith("g")
            weight = int(row["weight_g"])
            assert int(row["weight_tol_g"]) == max(5, round(0.03 * weight))


def test_image_layout_and_kinds(small: SynthCatalogue) -> None:
    _, refs = _rows(small.manifest)
    _, queries = _rows(small.queries)
    _, new = _rows(small.new_products)
    assert all(r["image"].startswith(f"images/{r['sku']}/ref_") for r in refs)
    assert all(r["image"].startswith(f"images/{r['sku']}/query_") for r in queries)
    assert all(r["image"].startswith(f"images/new/{r['sku']}/query_") for r in new)
    assert {r["sku"] for r in refs} == {s.sku_id for s in small.skus}
    assert small.skus[0].sku_id == "syn-00001"
    ref = (small.root / refs[0]["image"]).read_bytes()
    query = (small.root / queries[0]["image"]).read_bytes()
    assert ref != query, "references and queries must be different renderings"


def test_images_decode_with_sane_sizes(small: SynthCatalogue) -> None:
    paths = sorted(small.root.glob("images/**/*.jpg"))
    assert len(paths) == 6 * 2 + 6 * 2 + 2 * 2
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert image is not None, path
        h, w, channels = image.shape
        assert channels == 3
        assert min(h, w) >= 48, (path, image.shape)
        assert 140 <= max(h, w) <= 280, (path, image.shape)
        assert float(image.std()) > 10.0, "an image should not be a flat colour"


def test_png_output(tmp_path: Path) -> None:
    config = replace(SMALL, n_skus=1, refs_per_sku=1, queries_per_sku=1, n_new=0)
    catalogue = generate_catalogue(tmp_path / "png", replace(config, image_format="png"))
    _, rows = _rows(catalogue.manifest)
    assert rows[0]["image"].endswith(".png")
    assert cv2.imread(str(catalogue.root / rows[0]["image"])) is not None
    header, new_rows = _rows(catalogue.new_products)
    assert header == EXPECTED_HEADER and new_rows == []


def test_variants_of_a_line_share_brand_and_family() -> None:
    skus = catalogue_designs(seed=1, n_skus=30, variants_per_line=3)
    lines: dict[tuple[int, int], list[str]] = {}
    for sku in skus:
        lines.setdefault(sku.line_key, []).append(sku.sku_id)
    assert all(len(members) == 3 for members in lines.values())
    for members in lines.values():
        group = [s for s in skus if s.sku_id in members]
        assert len({s.brand.name for s in group}) == 1
        assert len({s.family.name for s in group}) == 1
        assert len({s.flavour.name for s in group}) == len(group), "variants differ in flavour"
        assert len({s.name for s in group}) == len(group)
    families = {s.line_key: (s.brand.name, s.family.name) for s in skus}
    assert len(set(families.values())) == len(families), "each line is its own product"
    assert len({s.brand.name for s in skus}) == len({s.brand.index for s in skus})
    assert len({s.family.shape for s in skus}) == 5, "a catalogue mixes all pack shapes"


def test_new_products_are_disjoint_from_catalogue(small: SynthCatalogue) -> None:
    assert len(small.new_skus) == SMALL.n_new
    catalogue_ids = {s.sku_id for s in small.skus}
    new_ids = {s.sku_id for s in small.new_skus}
    assert not catalogue_ids & new_ids
    assert not {s.barcode for s in small.skus} & {s.barcode for s in small.new_skus}
    assert not {s.brand.name for s in small.skus} & {s.brand.name for s in small.new_skus}
    _, refs = _rows(small.manifest)
    _, queries = _rows(small.queries)
    _, new = _rows(small.new_products)
    assert {r["sku"] for r in new} == new_ids
    assert not {r["sku"] for r in refs + queries} & new_ids


def test_long_tail_reference_counts(tmp_path: Path) -> None:
    skus = catalogue_designs(seed=0, n_skus=12, variants_per_line=3)
    assert reference_counts(0, skus, 5, 1.0) == [5] * 12
    counts = reference_counts(0, skus, 8, 4.0)
    assert max(counts) == 8 and min(counts) == 2
    assert counts != sorted(counts, reverse=True), "the head is not simply the first SKUs"

    config = replace(SMALL, n_skus=5, refs_per_sku=4, long_tail_ratio=4.0, n_new=0)
    catalogue = generate_catalogue(tmp_path / "tail", config)
    _, rows = _rows(catalogue.manifest)
    per_sku = Counter(r["sku"] for r in rows)
    assert sorted(per_sku.values()) == sorted(reference_counts(7, catalogue.skus, 4, 4.0))
    assert max(per_sku.values()) == 4 and min(per_sku.values()) == 1


def test_query_floor_adds_photos_to_the_first_skus_without_changing_any(
    tmp_path: Path,
) -> None:
    """The first SKUs get extra query photos; photo k is the same however many are taken."""
    config = replace(SMALL, n_skus=4, n_new=0, queries_per_sku=2, query_floor=((2, 5), (3, 3)))
    assert [config.queries_for_slot(i) for i in range(4)] == [5, 5, 3, 2]
    floored = generate_catalogue(tmp_path / "floored", config)
    _, rows = _rows(floored.queries)
    assert [Counter(r["sku"] for r in rows)[s.sku_id] for s in floored.skus] == [5, 5, 3, 2]
    plain = generate_catalogue(tmp_path / "plain", replace(config, query_floor=()))
    _, plain_rows = _rows(plain.queries)
    assert len(plain_rows) == 8
    for row in plain_rows:  # every photo of the plain catalogue is in the floored one, unchanged
        assert (tmp_path / "plain" / row["image"]).read_bytes() == (
            tmp_path / "floored" / row["image"]
        ).read_bytes()


def test_weights_and_names() -> None:
    assert weight_tolerance_g(100) == 5
    assert weight_tolerance_g(1000) == 30
    for sku in catalogue_designs(seed=2, n_skus=40, variants_per_line=2):
        assert sku.weight_g > sku.size_g > 0
        assert sku.weight_tol_g == max(5, round(0.03 * sku.weight_g))
        assert sku.name == f"{sku.brand.name} {sku.family.name} {sku.flavour.name} {sku.size_g}g"


def test_queries_are_harder_than_references() -> None:
    ref, query = reference_style(0.15), query_style(0.15)
    assert query.occlusion_rate > ref.occlusion_rate
    assert query.blur_sigma[1] > ref.blur_sigma[1]
    assert query.noise_sigma[1] > ref.noise_sigma[1]
    assert query.max_rotation_deg <= 15.0


def test_rerun_replaces_previous_output(tmp_path: Path) -> None:
    out = tmp_path / "cat"
    generate_catalogue(out, replace(SMALL, n_skus=3, n_new=0))
    generate_catalogue(out, replace(SMALL, n_skus=1, n_new=0))
    assert sorted(p.name for p in (out / "images").iterdir()) == ["syn-00001"]


def test_refuses_unrelated_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(SynthError, match="not empty"):
        generate_catalogue(tmp_path, SMALL)
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"n_skus": 0}, "n_skus"),
        ({"refs_per_sku": 0}, "refs_per_sku"),
        ({"queries_per_sku": -1}, "queries_per_sku"),
        ({"n_new": -1}, "n_new"),
        ({"new_queries_per_sku": 0}, "new_queries_per_sku"),
        ({"variants_per_line": 0}, "variants_per_line"),
        ({"variants_per_line": 99}, "variants_per_line"),
        ({"long_tail_ratio": 0.5}, "long_tail_ratio"),
        ({"long_tail_ratio": float("nan")}, "long_tail_ratio"),
        ({"occlusion_rate": 1.5}, "occlusion_rate"),
        ({"seed": -1}, "seed"),
        ({"image_format": "gif"}, "image_format"),
        ({"query_floor": ((10, -1),)}, "query_floor"),
        ({"query_floor": ((10,),)}, "query_floor"),
    ],
)
def test_invalid_config_is_rejected(tmp_path: Path, change: dict[str, object], field: str) -> None:
    config = replace(SMALL, **change)  # type: ignore[arg-type]
    with pytest.raises(SynthError, match=field) as info:
        generate_catalogue(tmp_path / "out", config)
    assert isinstance(info.value, CartosError) and info.value.exit_code == 2
    assert not (tmp_path / "out").exists(), "nothing is written for a bad config"


def test_catalogue_images_differ_between_skus(small: SynthCatalogue) -> None:
    small_refs = []
    for sku in small.skus:
        image = cv2.imread(str(small.root / f"images/{sku.sku_id}/ref_00.jpg"))
        assert image is not None
        small_refs.append(cv2.resize(image, (32, 32)).astype(np.float32))
    for i in range(len(small_refs)):
        for j in range(i + 1, len(small_refs)):
            assert float(np.abs(small_refs[i] - small_refs[j]).mean()) > 1.0
