"""Tests for the versioned SQLite catalogue store."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cartos.catalog import (
    SCHEMA_VERSION,
    CatalogError,
    CatalogStateError,
    CatalogStore,
    SkuRecord,
    UnknownSkuError,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CatalogStore]:
    with CatalogStore(tmp_path / "catalog.db") as opened:
        yield opened


def _vectors(n: int, d: int = 8, seed: int = 0) -> npt.NDArray[np.float32]:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _seed(store: CatalogStore, *skus: str, dim: int = 8) -> None:
    """One change adding the SKUs with two exemplars each."""
    with store.change("import", "seed"):
        for i, sku in enumerate(skus):
            store.upsert_sku(SkuRecord(sku, name=f"item {sku}"))
            store.add_exemplars(sku, _vectors(2, dim, seed=i), [f"{sku}/a.jpg", f"{sku}/b.jpg"])


# -- opening and versions ------------------------------------------------------


def test_new_catalogue_is_empty_at_version_zero(store: CatalogStore) -> None:
    assert store.version == 0
    assert store.history() == []
    assert store.list_skus(status=None) == []
    assert store.embedding_dim is None
    assert store.meta_get("schema_version") == str(SCHEMA_VERSION)


def test_wal_mode_is_on(store: CatalogStore) -> None:
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_each_change_bumps_the_version_and_is_recorded(store: CatalogStore) -> None:
    before = datetime.now().astimezone()
    with store.change("import", "first batch"):
        assert store.pending_version == 1
        store.upsert_sku(SkuRecord("A"))
    with store.change("edit", "second"):
        assert store.pending_version == 2
        store.upsert_sku(SkuRecord("B"))

    assert store.version == 2
    history = store.history()
    assert [(h.version, h.kind, h.summary) for h in history] == [
        (1, "import", "first batch"),
        (2, "edit", "second"),
    ]
    created = datetime.fromisoformat(history[0].created_at)
    assert created.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=5) <= created <= datetime.now().astimezone()


def test_exception_rolls_back_everything_in_the_change(store: CatalogStore) -> None:
    with store.change("import", "base"):
        store.upsert_sku(SkuRecord("A", name="apple"))
    snapshot = (store.list_skus(status=None), store.exemplar_counts(), store.history())

    with pytest.raises(RuntimeError, match="boom"), store.change("import", "doomed"):
        store.upsert_sku(SkuRecord("A", name="renamed"))
        store.upsert_sku(SkuRecord("B"))
        store.add_exemplars("B", _vectors(3), ["1", "2", "3"])
        store.put_prototypes("sku", ["B"], _vectors(1), [3])
        store.put_artifact("index", b"data")
        store.meta_set("backbone", "x")
        raise RuntimeError("boom")

    assert store.version == 1
    assert (store.list_skus(status=None), store.exemplar_counts(), store.history()) == snapshot
    assert store.embedding_dim is None
    assert store.prototypes("sku")[0] == []
    assert store.get_artifact("index") is None
    assert store.meta_get("backbone") is None
    # The store is usable again afterwards.
    with store.change("import", "retry"):
        store.upsert_sku(SkuRecord("B"))
    assert store.version == 2


def test_change_without_writes_does_not_bump(store: CatalogStore) -> None:
    _seed(store, "A")
    with store.change("noop", "empty"):
        pass
    with store.change("noop", "same values"):
        assert store.upsert_sku(SkuRecord("A", name="item A")) is False
        assert store.add_exemplars("A", _vectors(2), ["A/a.jpg", "A/b.jpg"]) == 0
    assert store.version == 1

    with store.change("edit", "discontinue A, set k"):
        store.discontinue("A")
        store.discontinue("A")
        store.meta_set("k", "v")
    assert store.version == 2

    with store.change("noop", "repeat"):
        store.discontinue("A")
        store.meta_set("k", "v")
        store.delete_prototypes("sku", ["never-existed"])
        assert store.remove_exemplars([10_000]) == 0
    assert store.version == 2
    assert [h.summary for h in store.history()] == ["seed", "discontinue A, set k"]


def test_nested_change_is_refused(store: CatalogStore) -> None:
    with store.change("outer", "o"):
        store.upsert_sku(SkuRecord("A"))
        with pytest.raises(CatalogStateError, match="nest"), store.change("inner", "i"):
            pass  # pragma: no cover - never entered
        store.upsert_sku(SkuRecord("B"))
    assert store.version == 1
    assert [r.sku for r in store.list_skus()] == ["A", "B"]


MUTATIONS: dict[str, Callable[[CatalogStore], object]] = {
    "upsert_sku": lambda s: s.upsert_sku(SkuRecord("Z")),
    "discontinue": lambda s: s.discontinue("A"),
    "add_exemplars": lambda s: s.add_exemplars("A", _vectors(1), ["new"]),
    "remove_exemplars": lambda s: s.remove_exemplars([1]),
    "put_prototypes": lambda s: s.put_prototypes("sku", ["A"], _vectors(1), [1]),
    "delete_prototypes": lambda s: s.delete_prototypes("sku", ["A"]),
    "put_artifact": lambda s: s.put_artifact("x", b"1"),
    "meta_set": lambda s: s.meta_set("k", "v"),
    "pending_version": lambda s: s.pending_version,
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_mutation_outside_change_is_refused(store: CatalogStore, name: str) -> None:
    _seed(store, "A")
    with pytest.raises(CatalogStateError, match="change"):
        MUTATIONS[name](store)
    assert store.version == 1
    assert store.list_skus(status=None) == [SkuRecord("A", name="item A")]
    assert store.exemplar_counts() == {"A": 2}


def test_reader_sees_only_committed_state_while_a_change_is_open(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    with CatalogStore(path) as writer:
        _seed(writer, "A")
        with writer.change("import", "in flight"):
            writer.upsert_sku(SkuRecord("B"))
            started = time.monotonic()
            with CatalogStore(path) as reader:
                assert reader.version == 1
                assert reader.get_sku("B") is None
                assert len(reader.exemplars()) == 2
            assert time.monotonic() - started < 5
        with CatalogStore(path) as reader:
            assert reader.version == 2
            assert reader.get_sku("B") == SkuRecord("B")


# -- SKUs ----------------------------------------------------------------------


def test_upsert_round_trip_keeps_none_fields_and_leading_zeros(store: CatalogStore) -> None:
    full = SkuRecord(
        sku="0001234",
        name="Oat milk 1 l",
        barcode="00012345678905",
        brand="Oatly",
        family="milk",
        weight_g=1032.5,
        weight_tol_g=15.0,
    )
    bare = SkuRecord("B-2")
    with store.change("import", "skus"):
        assert store.upsert_sku(full) is True
        assert store.upsert_sku(bare) is True
    assert store.get_sku("0001234") == full
    assert store.get_sku("B-2") == SkuRecord("B-2", "", None, None, None, None, None, "active")
    assert store.get_sku("missing") is None

    updated = SkuRecord("B-2", name="bread", weight_g=500.0)
    with store.change("edit", "name bread"):
        assert store.upsert_sku(updated) is True
        assert store.upsert_sku(updated) is False
    assert store.get_sku("B-2") == updated
    assert store.version == 2


def test_list_skus_filters_by_status_and_sorts(store: CatalogStore) -> None:
    with store.change("import", "skus"):
        for sku in ["c", "a", "b"]:
            store.upsert_sku(SkuRecord(sku))
        store.discontinue("b")
    assert [r.sku for r in store.list_skus()] == ["a", "c"]
    assert [r.sku for r in store.list_skus(status="discontinued")] == ["b"]
    assert [r.sku for r in store.list_skus(status=None)] == ["a", "b", "c"]


def test_upsert_validates_status_and_successor(store: CatalogStore) -> None:
    with store.change("import", "skus"):
        store.upsert_sku(SkuRecord("A"))
        with pytest.raises(CatalogError, match="status"):
            store.upsert_sku(SkuRecord("B", status="gone"))
        with pytest.raises(UnknownSkuError):
            store.upsert_sku(SkuRecord("B", status="discontinued", successor="nope"))
        with pytest.raises(CatalogError, match="own successor"):
            store.upsert_sku(SkuRecord("A", successor="A"))
        with pytest.raises(CatalogError, match="empty"):
            store.upsert_sku(SkuRecord(""))


def test_discontinue_with_successor(store: CatalogStore) -> None:
    _seed(store, "old", "new", "other")
    with store.change("edit", "replace old"):
        store.discontinue("old", successor="new")
    rec = store.get_sku("old")
    assert rec is not None
    assert (rec.status, rec.successor) == ("discontinued", "new")
    assert [r.sku for r in store.list_skus()] == ["new", "other"]

    with store.change("edit", "clear successor"):
        store.discontinue("old")
    rec = store.get_sku("old")
    assert rec is not None
    assert rec.successor is None
    assert store.version == 3


def test_discontinue_errors(store: CatalogStore) -> None:
    _seed(store, "a", "b")
    with store.change("edit", "errors"):
        with pytest.raises(UnknownSkuError, match="nope"):
            store.discontinue("nope")
        with pytest.raises(UnknownSkuError, match="ghost"):
            store.discontinue("a", successor="ghost")
        with pytest.raises(CatalogError, match="own successor"):
            store.discontinue("a", successor="a")
        store.discontinue("a", successor="b")
        with pytest.raises(CatalogError, match="cycle"):
            store.discontinue("b", successor="a")
    assert store.get_sku("b") == SkuRecord("b", name="item b")


# -- exemplars -----------------------------------------------------------------


def test_add_exemplars_is_idempotent_per_source(store: CatalogStore) -> None:
    with store.change("import", "one"):
        store.upsert_sku(SkuRecord("A"))
        assert store.add_exemplars("A", _vectors(3), ["x", "y", "z"]) == 3
    with store.change("import", "again"):
        assert store.add_exemplars("A", _vectors(3, seed=9), ["x", "y", "z"]) == 0
        assert store.add_exemplars("A", _vectors(2), ["z", "w"]) == 1
    assert store.exemplar_counts() == {"A": 4}
    assert store.exemplars().sources == ["x", "y", "z", "w"]
    # The original vector for "x" is kept, not overwritten by the second import.
    np.testing.assert_array_equal(store.exemplars().vectors[0], _vectors(3)[0])


def test_same_source_may_serve_different_skus(store: CatalogStore) -> None:
    with store.change("import", "shared shelf photo"):
        store.upsert_sku(SkuRecord("A"))
        store.upsert_sku(SkuRecord("B"))
        assert store.add_exemplars("A", _vectors(1), ["shelf.jpg"]) == 1
        assert store.add_exemplars("B", _vectors(1), ["shelf.jpg"]) == 1
    assert store.exemplar_counts() == {"A": 1, "B": 1}


def test_first_exemplar_fixes_the_dimension(store: CatalogStore) -> None:
    _seed(store, "A", dim=16)
    assert store.embedding_dim == 16
    with store.change("import", "wrong model"):
        with pytest.raises(CatalogStateError, match="dimension 8"):
            store.add_exemplars("A", _vectors(1, 8), ["c"])
        with pytest.raises(CatalogStateError):
            store.put_prototypes("sku", ["A"], _vectors(1, 8), [1])
    assert store.version == 1


def test_add_exemplars_rejects_bad_input(store: CatalogStore) -> None:
    with store.change("import", "bad"):
        store.upsert_sku(SkuRecord("A"))
        with pytest.raises(UnknownSkuError):
            store.add_exemplars("nope", _vectors(1), ["a"])
        with pytest.raises(ValueError, match="sources"):
            store.add_exemplars("A", _vectors(2), ["a"])
        with pytest.raises(ValueError, match="2-D"):
            store.add_exemplars("A", _vectors(1)[0], ["a"])
        bad = _vectors(2)
        bad[1, 3] = np.nan
        with pytest.raises(CatalogError, match="NaN"):
            store.add_exemplars("A", bad, ["a", "b"])
        assert store.add_exemplars("A", np.zeros((0, 8), np.float32), []) == 0
    assert store.embedding_dim is None


def test_exemplars_filtering_and_order(store: CatalogStore) -> None:
    with store.change("import", "mixed"):
        for sku in ["A", "B", "C"]:
            store.upsert_sku(SkuRecord(sku))
        store.add_exemplars("B", _vectors(2, seed=1), ["b1", "b2"])
        store.add_exemplars("A", _vectors(1, seed=2), ["a1"])
        store.add_exemplars("C", _vectors(1, seed=3), ["c1"], kind="synthetic")
    everything = store.exemplars()
    assert len(everything) == 4
    assert everything.ids.dtype == np.int64
    assert list(everything.ids) == sorted(everything.ids)
    assert everything.skus == ["B", "B", "A", "C"]
    assert everything.kinds == ["reference", "reference", "reference", "synthetic"]
    assert everything.vectors.dtype == np.float32
    assert everything.vectors.shape == (4, 8)
    everything.vectors[0] = 0.0  # callers may normalise in place

    only_a_c = store.exemplars(skus=iter(["A", "C"]))
    assert only_a_c.skus == ["A", "C"]
    np.testing.assert_array_equal(only_a_c.vectors[0], _vectors(1, seed=2)[0])
    assert store.exemplars(kind="synthetic").sources == ["c1"]
    assert store.exemplars(skus=["A"], kind="synthetic").skus == []
    assert store.exemplar_counts() == {"A": 1, "B": 2, "C": 1}
    assert store.exemplar_counts(kind="synthetic") == {"C": 1}

    empty = store.exemplars(skus=[])
    assert len(empty) == 0
    assert empty.vectors.shape == (0, 8)
    assert empty.vectors.dtype == np.float32


def test_empty_catalogue_exemplars_have_zero_width(store: CatalogStore) -> None:
    empty = store.exemplars()
    assert len(empty) == 0
    assert empty.vectors.shape == (0, 0)
    assert empty.ids.shape == (0,)


def test_remove_exemplars_never_reuses_ids(store: CatalogStore) -> None:
    _seed(store, "A")
    ids = [int(i) for i in store.exemplars().ids]
    with store.change("edit", "drop newest"):
        assert store.remove_exemplars([ids[-1], 999_999]) == 1
    with store.change("import", "add back"):
        assert store.add_exemplars("A", _vectors(1), ["A/c.jpg"]) == 1
    new_ids = [int(i) for i in store.exemplars().ids]
    assert new_ids[0] == ids[0]
    assert new_ids[1] > ids[-1]
    assert store.version == 3


def test_reading_thousands_of_exemplars_is_fast(store: CatalogStore) -> None:
    n_skus, per_sku, dim = 600, 10, 1280
    vectors = _vectors(n_skus * per_sku, dim)
    with store.change("import", "big"):
        for s in range(n_skus):
            sku = f"SKU{s:04d}"
            store.upsert_sku(SkuRecord(sku))
            rows = vectors[s * per_sku : (s + 1) * per_sku]
            store.add_exemplars(sku, rows, [f"{sku}/{i}.jpg" for i in range(per_sku)])
    started = time.perf_counter()
    loaded = store.exemplars()
    elapsed = time.perf_counter() - started
    assert loaded.vectors.shape == (6000, 1280)
    np.testing.assert_array_equal(loaded.vectors, vectors)
    assert elapsed < 1.0


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(
        dtype=np.float32,
        shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
        elements=st.floats(width=32, allow_nan=False, allow_infinity=False),
    )
)
def test_vectors_round_trip_bit_exactly(vectors: npt.NDArray[np.float32]) -> None:
    with tempfile.TemporaryDirectory() as folder, CatalogStore(Path(folder) / "c.db") as store:
        with store.change("import", "property"):
            store.upsert_sku(SkuRecord("A"))
            sources = [f"img{i}" for i in range(len(vectors))]
            assert store.add_exemplars("A", vectors, sources) == len(vectors)
            store.put_prototypes("sku", ["A"], vectors[:1], [len(vectors)])
        loaded = store.exemplars()
        assert loaded.vectors.dtype == np.float32
        # Compare the bit patterns so -0.0 and subnormals count too.
        np.testing.assert_array_equal(loaded.vectors.view(np.uint32), vectors.view(np.uint32))
        _, protos, _ = store.prototypes("sku")
        np.testing.assert_array_equal(protos.view(np.uint32), vectors[:1].view(np.uint32))


# -- prototypes ----------------------------------------------------------------


def test_prototypes_are_versioned(store: CatalogStore) -> None:
    first = _vectors(3, seed=1)
    with store.change("prototypes", "v1"):
        store.put_prototypes("sku", ["a", "b", "c"], first, [5, 6, 7])
    v1 = store.version

    replacement = _vectors(1, seed=2)
    with store.change("prototypes", "v2"):
        store.put_prototypes("sku", ["b"], replacement, [9])
        store.delete_prototypes("sku", ["c"])
    v2 = store.version
    assert v2 == v1 + 1

    keys, matrix, counts = store.prototypes("sku")
    assert keys == ["a", "b"]
    assert counts == [5, 9]
    np.testing.assert_array_equal(matrix, np.stack([first[0], replacement[0]]))

    keys, matrix, counts = store.prototypes("sku", version=v1)
    assert keys == ["a", "b", "c"]
    assert counts == [5, 6, 7]
    np.testing.assert_array_equal(matrix, first)

    keys, matrix, _ = store.prototypes("sku", version=0)
    assert keys == []
    assert matrix.shape == (0, 8)
    assert store.prototypes("family")[0] == []


def test_prototype_put_then_delete_in_one_change_and_resurrection(store: CatalogStore) -> None:
    with store.change("prototypes", "v1"):
        store.put_prototypes("brand", ["x"], _vectors(1), [1])
        store.delete_prototypes("brand", ["x"])
    assert store.version == 1
    assert store.prototypes("brand")[0] == []
    with store.change("prototypes", "v2"):
        store.put_prototypes("brand", ["x"], _vectors(1, seed=4), [2])
    assert store.prototypes("brand")[2] == [2]
    assert store.prototypes("brand", version=1)[0] == []


def test_prototype_input_is_checked(store: CatalogStore) -> None:
    with store.change("prototypes", "bad"):
        with pytest.raises(CatalogError, match="level"):
            store.put_prototypes("aisle", ["a"], _vectors(1), [1])
        with pytest.raises(ValueError, match="align"):
            store.put_prototypes("sku", ["a", "b"], _vectors(1), [1])
        with pytest.raises(ValueError, match="unique"):
            store.put_prototypes("sku", ["a", "a"], _vectors(2), [1, 1])
        with pytest.raises(CatalogError, match="level"):
            store.delete_prototypes("aisle", ["a"])
    with pytest.raises(CatalogError, match="level"):
        store.prototypes("aisle")
    assert store.version == 0


# -- artifacts and meta ----------------------------------------------------------


def test_artifacts_are_versioned(store: CatalogStore) -> None:
    assert store.get_artifact("calibration") is None
    assert store.artifact_version("calibration") is None
    with store.change("calibrate", "first"):
        store.put_artifact("calibration", b"one")
    with store.change("import", "unrelated"):
        store.upsert_sku(SkuRecord("A"))
    with store.change("calibrate", "second"):
        store.put_artifact("calibration", b"two")
        store.put_artifact("calibration", b"two, final")
    assert store.get_artifact("calibration") == b"two, final"
    assert store.artifact_version("calibration") == 3
    assert store.get_artifact("calibration", version=1) == b"one"
    assert store.get_artifact("calibration", version=2) == b"one"
    assert store.get_artifact("calibration", version=0) is None


def test_meta_round_trip_and_reserved_keys(store: CatalogStore) -> None:
    with store.change("settings", "backbone"):
        store.meta_set("backbone", "efficientnet_lite0_int8")
        with pytest.raises(CatalogError, match="managed"):
            store.meta_set("embedding_dim", "3")
        with pytest.raises(CatalogError, match="managed"):
            store.meta_set("schema_version", "99")
    assert store.meta_get("backbone") == "efficientnet_lite0_int8"
    assert store.meta_get("missing") is None
    assert store.version == 1


# -- files ---------------------------------------------------------------------


def test_reopening_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    with CatalogStore(path) as store:
        _seed(store, "A", "B")
        with store.change("prototypes", "build"):
            store.put_prototypes("sku", ["A", "B"], _vectors(2), [2, 2])
            store.put_artifact("index", b"\x00\x01")
            store.meta_set("backbone", "lite0")
        before = (
            store.version,
            store.history(),
            store.list_skus(status=None),
            store.exemplars(),
            store.prototypes("sku"),
        )
    with CatalogStore(str(path)) as store:
        assert store.version == before[0] == 2
        assert store.history() == before[1]
        assert store.list_skus(status=None) == before[2]
        loaded = store.exemplars()
        np.testing.assert_array_equal(loaded.ids, before[3].ids)
        np.testing.assert_array_equal(loaded.vectors, before[3].vectors)
        assert loaded.sources == before[3].sources
        keys, matrix, counts = store.prototypes("sku")
        assert (keys, counts) == (before[4][0], before[4][2])
        np.testing.assert_array_equal(matrix, before[4][1])
        assert store.get_artifact("index") == b"\x00\x01"
        assert store.meta_get("backbone") == "lite0"
        assert store.embedding_dim == 8


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    CatalogStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    with pytest.raises(CatalogError, match="newer"):
        CatalogStore(path)


def test_non_catalogue_files_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(CatalogError, match="not a usable catalogue"):
        CatalogStore(junk)
    with pytest.raises(CatalogError):
        CatalogStore(tmp_path / "missing-folder" / "catalog.db")
