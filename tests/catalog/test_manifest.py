"""Tests for the retailer manifest reader."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartos.catalog import ManifestError, SkuRecord, read_manifest

HEADER = "image,sku,barcode,name,brand,family,weight_g,weight_tol_g"


def _write(folder: Path, text: str, name: str = "manifest.csv", bom: bool = False) -> Path:
    path = folder / name
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    return path


def test_good_manifest_with_bom_and_quoted_fields(tmp_path: Path) -> None:
    text = (
        f"{HEADER}\r\n"
        'img/milk_1.jpg,MILK-1,0012345678905,"Milk, whole ""fresh""",Dairyco,milk,1032.5,15\r\n'
        "img/milk_2.jpg,MILK-1,,,,,,\r\n"
        "\r\n"
        '"img/bread 1.jpg",BREAD,,"Sourdough\nloaf",,,400,\r\n'
        "img/apple.jpg,APPLE,40000000,,,,,\r\n"
    )
    manifest = read_manifest(_write(tmp_path, text, bom=True))

    assert manifest.problems == []
    assert manifest.warnings == []
    assert manifest.path == tmp_path / "manifest.csv"
    assert [row.line for row in manifest.rows] == [2, 3, 5, 7]
    milk = SkuRecord(
        sku="MILK-1",
        name='Milk, whole "fresh"',
        barcode="0012345678905",
        brand="Dairyco",
        family="milk",
        weight_g=1032.5,
        weight_tol_g=15.0,
    )
    assert manifest.rows[0].sku == milk
    # Later rows of a SKU carry the attributes given on its first row.
    assert manifest.rows[1].sku == milk
    assert manifest.rows[2].sku == SkuRecord("BREAD", name="Sourdough\nloaf", weight_g=400.0)
    assert manifest.rows[3].sku == SkuRecord("APPLE", barcode="40000000")
    assert manifest.rows[2].image_text == "img/bread 1.jpg"
    assert [s.sku for s in manifest.skus] == ["MILK-1", "BREAD", "APPLE"]


def test_image_paths_resolve_against_the_manifest_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    text = "sku,image\nA,a.jpg\nB,sub/../b.jpg\nC,pics\\c.jpg\nD,/abs/d.jpg\n"
    path = _write(folder, text)
    monkeypatch.chdir(tmp_path)
    manifest = read_manifest(Path("export") / "manifest.csv")
    assert manifest.problems == []
    images = [row.image for row in manifest.rows]
    assert all(image.is_absolute() for image in images)
    root = path.parent.resolve()
    assert images == [root / "a.jpg", root / "b.jpg", root / "pics" / "c.jpg", Path("/abs/d.jpg")]
    assert [row.image_text for row in manifest.rows] == [
        "a.jpg",
        "sub/../b.jpg",
        "pics\\c.jpg",
        "/abs/d.jpg",
    ]


def test_only_required_columns(tmp_path: Path) -> None:
    manifest = read_manifest(_write(tmp_path, "IMAGE , Sku\nx.jpg,X\n"))
    assert manifest.problems == []
    assert manifest.rows[0].sku == SkuRecord("X")


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        ("sku,name", "image"),
        ("image,barcode", "sku"),
        ("name,brand", "image, sku"),
    ],
)
def test_missing_required_header(tmp_path: Path, header: str, missing: str) -> None:
    path = _write(tmp_path, f"{header}\na,b\n")
    with pytest.raises(ManifestError, match=f"missing required column\\(s\\): {missing}$"):
        read_manifest(path)


def test_unknown_columns_are_ignored_with_a_warning(tmp_path: Path) -> None:
    text = "image,sku,shelf,price,\na.jpg,A,3,1.99,\n"
    manifest = read_manifest(_write(tmp_path, text))
    assert manifest.rows[0].sku == SkuRecord("A")
    assert len(manifest.warnings) == 3
    assert "'shelf'" in manifest.warnings[0]
    assert "'price'" in manifest.warnings[1]
    assert "column 5" in manifest.warnings[2]


def test_whole_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read"):
        read_manifest(tmp_path / "nope.csv")
    with pytest.raises(ManifestError, match="empty"):
        read_manifest(_write(tmp_path, "\n\n", name="empty.csv"))
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("image,sku,name\na.jpg,A,Caf\xe9\n".encode("latin-1"))
    with pytest.raises(ManifestError, match="UTF-8"):
        read_manifest(latin)
    with pytest.raises(ManifestError, match="twice"):
        read_manifest(_write(tmp_path, "image,sku,SKU\na,b,c\n", name="dup.csv"))


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        (",A,,,,,,", "image is empty"),
        ("  ,A,,,,,,", "image is empty"),
        ("a.jpg,,,,,,,", "sku is empty"),
        ("a.jpg,A B,,,,,,", "whitespace or control"),
        ("a.jpg,A\tB,,,,,,", "whitespace or control"),
        ("a.jpg,AB\u200b,,,,,,", "whitespace or control"),
        ("a.jpg, A,,,,,,", "whitespace or control"),
        (f"a.jpg,{'X' * 65},,,,,,", "65 characters"),
        ("a.jpg,A,12345x78,,,,,", "not all digits"),
        ("a.jpg,A,1234567,,,,,", "7 digits"),
        ("a.jpg,A,123456789,,,,,", "9 digits"),
        ("a.jpg,A,-1234567,,,,,", "not all digits"),
        ("a.jpg,A,,,,,heavy,", "weight_g 'heavy' is not a number"),
        ('a.jpg,A,,,,,"12,5",', "not a number"),
        ("a.jpg,A,,,,,-3,", "negative"),
        ("a.jpg,A,,,,,nan,", "NaN"),
        ("a.jpg,A,,,,,inf,", "not finite"),
        ("a.jpg,A,,,,,100,x", "weight_tol_g 'x' is not a number"),
        ("a.jpg,A,,,,,100,-1", "weight_tol_g '-1' is negative"),
        ("a.jpg,A,,,,,,5", "weight_tol_g is given without weight_g"),
        ("a.jpg,A,,,,,,,extra", "9 fields"),
    ],
)
def test_row_problems(tmp_path: Path, row: str, fragment: str) -> None:
    text = f"{HEADER}\nok.jpg,OK,,,,,,\n\n{row}\nok2.jpg,OK,,,,,,\n"
    manifest = read_manifest(_write(tmp_path, text))
    assert [r.line for r in manifest.rows] == [2, 5]
    assert len(manifest.problems) == 1
    problem = manifest.problems[0]
    assert problem.line == 4
    assert fragment in problem.message
    assert problem.image == row.split(",")[0]


def test_valid_barcode_lengths_keep_leading_zeros(tmp_path: Path) -> None:
    codes = ["00000000", "012345678905", "0012345678905", "00012345678905"]
    text = "image,sku,barcode\n" + "".join(f"{i}.jpg,S{i},{c}\n" for i, c in enumerate(codes))
    manifest = read_manifest(_write(tmp_path, text))
    assert manifest.problems == []
    assert [row.sku.barcode for row in manifest.rows] == codes


def test_a_row_with_several_problems_is_reported_once(tmp_path: Path) -> None:
    manifest = read_manifest(_write(tmp_path, f"{HEADER}\n,,123,,,,-1,\n"))
    assert manifest.rows == []
    [problem] = manifest.problems
    assert problem.line == 2
    for fragment in ("image is empty", "sku is empty", "3 digits", "negative"):
        assert fragment in problem.message


def test_conflicting_attributes_for_one_sku(tmp_path: Path) -> None:
    text = (
        f"{HEADER}\n"
        "1.jpg,A,12345670,Apple,,fruit,100,\n"  # line 2 fixes the attributes
        "2.jpg,A,,,,,,\n"  # empty cells are not conflicts
        "3.jpg,A,87654325,,,,,\n"  # conflicting barcode
        "4.jpg,A,12345670,Apple,,fruit,100,\n"  # agrees again
        "5.jpg,A,,Pear,,,,\n"  # conflicting name
        "6.jpg,A,,,Acme,,100.0,5\n"  # new attributes, weight equal as a number
        "7.jpg,A,,,Other,,101,\n"  # conflicts with line 6 (brand) and line 2 (weight)
    )
    manifest = read_manifest(_write(tmp_path, text))
    assert [row.line for row in manifest.rows] == [2, 3, 5, 7]
    lines = {p.line: p.message for p in manifest.problems}
    assert sorted(lines) == [4, 6, 8]
    assert "barcode '87654325' conflicts with '12345670'" in lines[4]
    assert "line 2" in lines[4]
    assert "name 'Pear'" in lines[6]
    assert "brand 'Other' conflicts with 'Acme'" in lines[8]
    assert "line 7" in lines[8]
    assert "weight_g" in lines[8]
    expected = SkuRecord(
        "A",
        name="Apple",
        barcode="12345670",
        brand="Acme",
        family="fruit",
        weight_g=100.0,
        weight_tol_g=5.0,
    )
    assert all(row.sku == expected for row in manifest.rows)


def test_rejected_rows_do_not_fix_attributes(tmp_path: Path) -> None:
    text = "image,sku,barcode,name\n1.jpg,A,123,First\n2.jpg,A,12345670,Second\n"
    manifest = read_manifest(_write(tmp_path, text))
    assert [p.line for p in manifest.problems] == [2]
    assert manifest.rows[0].sku == SkuRecord("A", name="Second", barcode="12345670")


def test_duplicate_image_and_sku(tmp_path: Path) -> None:
    text = (
        "image,sku\n"
        "a.jpg,A\n"
        "a.jpg,B\n"  # same image, another SKU: allowed
        "./a.jpg,A\n"  # same file, same SKU
        "b.jpg,A\n"
        "a.jpg,A\n"
    )
    manifest = read_manifest(_write(tmp_path, text))
    assert [(row.line, row.sku.sku) for row in manifest.rows] == [(2, "A"), (3, "B"), (5, "A")]
    assert [p.line for p in manifest.problems] == [4, 6]
    assert all("already listed" in p.message and "line 2" in p.message for p in manifest.problems)
    assert manifest.problems[0].image == "./a.jpg"


def test_image_existence_is_not_checked(tmp_path: Path) -> None:
    manifest = read_manifest(_write(tmp_path, "image,sku\ndoes/not/exist.jpg,A\n"))
    assert manifest.problems == []
    assert not manifest.rows[0].image.exists()


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(alphabet="ABCXYZ0123456789-_.", min_size=1, max_size=64),
            st.sampled_from([8, 12, 13, 14]).flatmap(
                lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n)
            ),
        ),
        min_size=1,
        max_size=10,
        unique_by=lambda pair: pair[0],
    )
)
def test_valid_rows_survive_unchanged(pairs: list[tuple[str, str]]) -> None:
    text = "image,sku,barcode\n" + "".join(f"{i}.jpg,{s},{b}\n" for i, (s, b) in enumerate(pairs))
    with tempfile.TemporaryDirectory() as folder:
        manifest = read_manifest(_write(Path(folder), text))
    assert manifest.problems == []
    assert [(row.sku.sku, row.sku.barcode) for row in manifest.rows] == pairs
    assert [row.line for row in manifest.rows] == list(range(2, len(pairs) + 2))
