"""The recognition index's search: full scoring, the shortlist, and the family/brand posterior."""

from __future__ import annotations

import numpy as np
import pytest

from cartos.catalog.records import SkuRecord
from cartos.inference.calibration import Calibration, LogisticModel, softmax
from cartos.inference.index import RecognitionIndex, Shortlist, top_of
from cartos.inference.projection import Projection
from cartos.inference.recognizer import Recognizer

DIM = 64


def _catalogue(
    skus: int, seed: int = 0, spread: float = 0.5
) -> tuple[list[SkuRecord], np.ndarray, list[str], np.ndarray]:
    """SKUs as clusters: 1 to 4 exemplars around a random centre, three SKUs per family."""
    rng = np.random.default_rng(seed)
    records = [
        SkuRecord(sku=f"s{i:05d}", name=f"item {i}", family=f"f{i // 3}", brand=f"b{i // 12}")
        for i in range(skus)
    ]
    counts = rng.integers(1, 5, skus)
    centres = rng.normal(size=(skus, DIM)).astype(np.float32)
    vectors = np.repeat(centres, counts, axis=0)
    vectors += spread * rng.normal(size=vectors.shape).astype(np.float32)
    labels = [r.sku for r, c in zip(records, counts, strict=True) for _ in range(c)]
    return records, vectors, labels, centres


def _index(skus: int, exhaustive_up_to: int, seed: int = 0) -> tuple[RecognitionIndex, np.ndarray]:
    records, vectors, labels, centres = _catalogue(skus, seed)
    index = RecognitionIndex(records, vectors, labels, Projection.identity(DIM),
                             exhaustive_up_to=exhaustive_up_to)
    return index, centres


def test_top_of_returns_the_best_columns_best_first_with_their_scores() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [0.4, 0.3, 0.2, 0.8]], dtype=np.float32)
    top = top_of(scores, 3)
    assert top.columns.tolist() == [[1, 3, 2], [3, 0, 1]]
    np.testing.assert_allclose(top.scores, [[0.9, 0.7, 0.5], [0.8, 0.4, 0.3]], rtol=1e-6)
    assert top_of(scores, 10).columns.shape == (2, 4)  # k beyond the catalogue: all of it


def test_a_small_catalogue_is_scored_in_full() -> None:
    index, centres = _index(50, exhaustive_up_to=100)
    assert index.shortlist is None
    queries = centres[:20] + 0.3 * np.random.default_rng(1).normal(size=(20, DIM))
    best = index.best(queries, 10)
    full = top_of(index.score(queries), 10)
    np.testing.assert_array_equal(best.columns, full.columns)
    np.testing.assert_array_equal(best.scores, full.scores)


def test_the_shortlist_finds_the_same_best_skus_with_the_same_scores() -> None:
    index, centres = _index(600, exhaustive_up_to=100)
    assert isinstance(index.shortlist, Shortlist)
    rng = np.random.default_rng(2)
    queries = centres[rng.choice(600, 100, replace=False)] + 0.4 * rng.normal(size=(100, DIM))
    best = index.best(queries, 10)
    full = top_of(index.score(queries), 10)
    np.testing.assert_array_equal(best.columns, full.columns)
    np.testing.assert_allclose(best.scores, full.scores, rtol=1e-5, atol=1e-6)


def test_a_shortlisted_index_answers_like_a_full_one() -> None:
    """Same decisions end to end, through the recogniser and a calibration."""
    shortlisted, centres = _index(600, exhaustive_up_to=100)
    full, _ = _index(600, exhaustive_up_to=10_000)
    cal = Calibration(
        catalog_version=0, temperature=0.05,
        confidence_model=LogisticModel([4.0, 2.0], 0.0, [0.5, 0.1], [0.2, 0.1]),
        unknown_model=LogisticModel([-3.0, -1.0], -1.0, [0.5, 0.1], [0.2, 0.1]),
        accept_threshold=0.8, confirm_threshold=0.5, unknown_threshold=0.7,
        family_threshold=0.6, brand_threshold=0.6,
    )
    rng = np.random.default_rng(3)
    queries = centres[rng.choice(600, 60, replace=False)] + 0.5 * rng.normal(size=(60, DIM))
    a = Recognizer(shortlisted, cal).recognize_vectors(queries)
    b = Recognizer(full, cal).recognize_vectors(queries)
    assert [r.to_dict() for r in a] == [r.to_dict() for r in b]
    assert {r.decision for r in a} & {"accept", "confirm"}  # not a degenerate agreement


def test_the_shortlist_is_a_heuristic_whose_misses_can_be_counted() -> None:
    """With a one-SKU shortlist the second best can only be missed: the test can fail."""
    index, centres = _index(300, exhaustive_up_to=100)
    assert index.shortlist is not None
    tiny = Shortlist.fit(index._prototypes, dims=(2, 4), widths=(3, 1))
    object.__setattr__(index, "shortlist", tiny)
    rng = np.random.default_rng(4)
    queries = centres[:50] + 0.4 * rng.normal(size=(50, DIM))
    assert index.best(queries, 2).columns.shape == (50, 1)
    agree = (index.best(queries, 1).columns[:, 0] == index.score(queries).argmax(axis=1)).mean()
    assert agree < 1.0


def test_group_posterior_sums_each_groups_share_and_breaks_ties_alphabetically() -> None:
    records = [
        SkuRecord(sku="a", name="a", family="tea", brand="acme"),
        SkuRecord(sku="b", name="b", family="tea", brand="acme"),
        SkuRecord(sku="c", name="c", family="coffee", brand="brew"),
        SkuRecord(sku="d", name="d", family=None, brand=None),
    ]
    vectors = np.eye(4, dtype=np.float32)
    index = RecognitionIndex(records, vectors, ["a", "b", "c", "d"], Projection.identity(4))
    cols = np.array([[2, 0, 1], [2, 0, 3], [3, 3, 3]])
    probs = np.array([[0.4, 0.3, 0.3], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    names, mass = index.group_posterior(cols, probs, "family")
    assert names == ["tea", "coffee", None]  # 0.6 tea; 0.5/0.5 tie -> "coffee"; no family
    np.testing.assert_allclose(mass, [0.6, 0.5, 0.0])
    brands, brand_mass = index.group_posterior(cols, probs, "brand")
    assert brands == ["acme", "acme", None]
    np.testing.assert_allclose(brand_mass, [0.6, 0.5, 0.0])


@pytest.mark.parametrize("skus", [1, 2, 7])
def test_tiny_catalogues_still_answer(skus: int) -> None:
    index, centres = _index(skus, exhaustive_up_to=100)
    (answer,) = Recognizer(index, None).recognize_vectors(centres[:1])
    assert answer.sku == index.skus[0] and len(answer.topk) == min(5, skus)
    probs = softmax(index.best(centres[:1], 10).scores, 0.05)
    assert probs.shape == (1, skus)
