from __future__ import annotations

import pytest

from cartos.fusion import EvidenceError, VisionEvidence, WeightEvidence
from cartos.fusion.evidence import combine_frames
from cartos.inference.recognizer import Candidate, Recognition


def _rec(top: str, second: str, confidence: float, unknown: float) -> Recognition:
    return Recognition(
        decision="confirm",
        sku=top,
        confidence=confidence,
        level="sku",
        family=None,
        brand=None,
        unknown_score=unknown,
        topk=[Candidate(top, 0.8), Candidate(second, 0.7), Candidate("other", 0.5)],
    )


def test_recognition_becomes_a_posterior_with_unknown_mass() -> None:
    v = VisionEvidence.from_recognition(_rec("a", "b", 0.7, 0.1), temperature=0.05)
    assert v.posterior["a"] == pytest.approx(0.7)
    assert v.unknown_mass == pytest.approx(0.1)
    assert sum(v.posterior.values()) + v.unknown_mass == pytest.approx(1.0)
    assert v.posterior["b"] > v.posterior["other"]  # rest shared by score
    assert v.probability("never-ranked") == v.tail < v.posterior["other"]


def test_consistent_frames_raise_confidence_and_disagreement_lowers_it() -> None:
    one = VisionEvidence.from_recognition(_rec("a", "b", 0.7, 0.1))
    same = VisionEvidence.from_recognitions([_rec("a", "b", 0.7, 0.1)] * 3)
    mixed = VisionEvidence.from_recognitions(
        [_rec("a", "b", 0.7, 0.1), _rec("b", "a", 0.7, 0.1), _rec("a", "b", 0.7, 0.1)]
    )
    assert same.posterior["a"] > one.posterior["a"]
    assert same.agreement == 1.0 and same.frames == 3
    assert mixed.posterior["a"] < one.posterior["a"]
    assert mixed.top_sku == "a" and mixed.agreement == pytest.approx(2 / 3)


def test_fully_correlated_frames_count_once() -> None:
    one = VisionEvidence.from_recognition(_rec("a", "b", 0.7, 0.1))
    copies = combine_frames([one, one, one], frame_correlation=1.0)
    assert copies.posterior["a"] == pytest.approx(one.posterior["a"], rel=1e-6)


def test_inconsistent_evidence_is_refused() -> None:
    with pytest.raises(EvidenceError):
        VisionEvidence({"a": 0.8}, unknown_mass=0.5)
    with pytest.raises(EvidenceError):
        WeightEvidence(100.0, sigma_g=0.0)
    with pytest.raises(EvidenceError):
        VisionEvidence.from_recognitions([])
