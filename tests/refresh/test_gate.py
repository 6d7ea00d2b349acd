"""The validation gate on real recognisers built from controlled embeddings: it accepts a
better backbone and rejects a broken one, one that regresses a protected SKU, and an INT8
export that disagrees with its parent, saying why each time."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cartos.catalog.records import SkuRecord
from cartos.inference.calibration import CalibrationTargets
from cartos.refresh.errors import RefreshError
from cartos.refresh.gate import GateSettings, judge
from cartos.refresh.score import LabelledVectors, ModelScore, auroc, build_recognizer, score

SKUS, UNKNOWN, DIM = 40, 10, 48
RECORDS = [SkuRecord(sku=f"s{i:02d}", name=f"item {i}", family=f"f{i // 4}", brand=f"b{i // 8}")
           for i in range(SKUS)]
TARGETS = CalibrationTargets(holdout_fraction=0.15, folds=6)


class World:
    """Product looks (cluster centres) and a way to 'photograph' them with some backbone.

    A backbone is modelled by how much noise its embeddings carry: a better one, less.
    A ``broken`` SKU's shelf photos (not its studio references) are embedded close to
    another SKU, as a backbone that learned to confuse the two would embed them."""

    def __init__(self, seed: int = 0) -> None:
        self.centres = np.random.default_rng(seed).normal(size=(SKUS + UNKNOWN, DIM))
        self.rng = np.random.default_rng(seed + 1)

    def shots(self, index: int, count: int, noise: float, broken: dict[int, int]) -> np.ndarray:
        centre = self.centres[index]
        if index in broken:
            centre = 0.2 * centre + 0.8 * self.centres[broken[index]]
        v = centre + noise * self.rng.normal(size=(count, DIM))
        return np.asarray(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=np.float32)

    def model(self, noise: float, broken: dict[int, int] | None = None,
              shuffle_labels: bool = False) -> dict[str, ModelScore]:
        broken = broken or {}
        # The same noise draws for every model (common random numbers): models differ only
        # in what the test says, whatever order the tests run in.
        self.rng = np.random.default_rng(1)

        def sets(per: int, with_unknown: bool, shelf: bool = True) -> LabelledVectors:
            vectors, labels = [], []
            for i in range(SKUS + (UNKNOWN if with_unknown else 0)):
                vectors.append(self.shots(i, per, noise, broken if shelf else {}))
                labels += [RECORDS[i].sku if i < SKUS else None] * per
            return LabelledVectors(np.concatenate(vectors), labels)

        refs = sets(4, with_unknown=False, shelf=False)
        if shuffle_labels:  # a refresh trained on shuffled labels: references of wrong SKUs
            order = self.rng.permutation(len(refs.skus))
            refs = LabelledVectors(refs.vectors[order], refs.skus)
        recognizer = build_recognizer(RECORDS, refs, sets(4, True), TARGETS)
        return {"historical": score(recognizer, sets(6, True)),
                "recent": score(recognizer, sets(3, True))}


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.fixture(scope="module")
def current(world: World) -> dict[str, ModelScore]:
    return world.model(noise=1.3)


def test_a_better_backbone_passes(world: World, current: dict[str, ModelScore]) -> None:
    better = world.model(noise=0.6)
    assert better["historical"].top1 > current["historical"].top1
    verdict = judge(current, better, GateSettings(), int8_agreement=0.995)
    assert verdict.accepted, verdict.reasons
    assert verdict.reason == "better on every rule"
    assert verdict.numbers["candidate"]["historical"]["top1"] == better["historical"].top1


def test_a_refresh_trained_on_shuffled_labels_is_rejected(
    world: World, current: dict[str, ModelScore]
) -> None:
    broken = world.model(noise=0.6, shuffle_labels=True)
    verdict = judge(current, broken, GateSettings(), int8_agreement=0.995)
    assert not verdict.accepted
    assert any("does not beat the current" in r for r in verdict.reasons), verdict.reasons
    assert any(r.startswith("recent top-1 falls") for r in verdict.reasons), verdict.reasons


def test_a_refresh_that_regresses_a_protected_sku_is_rejected_and_names_it(
    world: World, current: dict[str, ModelScore]
) -> None:
    candidate = world.model(noise=0.6, broken={7: 8})  # s07 now looks like s08
    assert candidate["historical"].top1 > current["historical"].top1  # better on average
    unprotected = judge(current, candidate, GateSettings(), 0.995)
    assert not any("s07" in r for r in unprotected.reasons)
    verdict = judge(current, candidate, GateSettings(protected_skus=("s07", "s20")), 0.995)
    assert not verdict.accepted
    named = [r for r in verdict.reasons if r.startswith("protected SKU")]
    assert len(named) == 1 and named[0].startswith("protected SKU s07 falls"), verdict.reasons


def test_an_int8_export_that_disagrees_with_its_parent_is_rejected(
    world: World, current: dict[str, ModelScore]
) -> None:
    better = world.model(noise=0.6)
    verdict = judge(current, better, GateSettings(), int8_agreement=0.967)
    assert not verdict.accepted
    assert verdict.reasons == ["INT8 agrees with its FP32 parent on 96.7 % of top-1 answers, "
                               "below 99.0 %"]


def test_calibration_and_open_set_regressions_are_named(current: dict[str, ModelScore]) -> None:
    h = current["historical"]
    worse = {"historical": replace(h, top1=h.top1 + 0.05, ece=0.2,
                                   unknown_auroc=(h.unknown_auroc or 0.9) - 0.1,
                                   accept_precision=(h.accept_precision or 1.0) - 0.05)}
    verdict = judge({"historical": h}, worse, GateSettings())
    joined = " | ".join(verdict.reasons)
    assert "ECE 0.200" in joined and "unknown AUROC falls" in joined
    assert "accept precision falls" in joined and len(verdict.reasons) == 3


def test_auroc_matches_counting_pairs() -> None:
    rng = np.random.default_rng(5)
    pos, neg = rng.integers(0, 5, 30).astype(float), rng.integers(0, 5, 40).astype(float)
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p in pos for n in neg]
    assert auroc(pos, neg) == pytest.approx(float(np.mean(pairs)))
    assert auroc(np.array([2.0]), np.array([1.0])) == 1.0
    assert auroc(np.array([]), neg) is None


def test_mismatched_labels_and_empty_sets_are_refused() -> None:
    with pytest.raises(RefreshError, match="3 vectors but 2 labels"):
        LabelledVectors(np.zeros((3, 4)), ["a", "b"])
