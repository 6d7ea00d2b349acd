"""Projection, logistic calibration, thresholds and ECE on controlled data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartos.inference.calibration import (
    LogisticModel,
    expected_calibration_error,
    fit_temperature,
    softmax,
    threshold_for_precision,
)
from cartos.inference.projection import Projection, fit_projection


def _clusters(rng: np.random.Generator, classes: int, per: int, dim: int, noise: float):
    centres = rng.normal(size=(classes, dim))
    # a shared nuisance direction with large variance, the thing LDA should suppress
    nuisance = rng.normal(size=dim) * 6
    x, y = [], []
    for c in range(classes):
        for _ in range(per):
            x.append(centres[c] + noise * rng.normal(size=dim) + rng.normal() * nuisance)
            y.append(c)
    return np.asarray(x), np.asarray(y)


def _nearest_centroid_acc(train_x, train_y, test_x, test_y, proj: Projection) -> float:
    a, b = proj.apply(train_x), proj.apply(test_x)
    cents = np.stack([a[train_y == c].mean(0) for c in np.unique(train_y)])
    return float(((b @ cents.T).argmax(1) == test_y).mean())


def test_projection_suppresses_within_class_nuisance() -> None:
    rng = np.random.default_rng(1)
    x, y = _clusters(rng, 20, 12, 32, 0.6)
    tx, ty = _clusters(np.random.default_rng(1), 20, 12, 32, 0.6)  # same centres
    tx = tx + 0.0
    fitted = fit_projection(x, y, shrinkage=0.1)
    identity = Projection.identity(32)
    assert fitted.fitted_classes == 20
    acc_fit = _nearest_centroid_acc(x, y, tx, ty, fitted)
    acc_id = _nearest_centroid_acc(x, y, tx, ty, identity)
    assert acc_fit > acc_id + 0.1


def test_projection_needs_repeated_references() -> None:
    x = np.random.default_rng(0).normal(size=(30, 16))
    proj = fit_projection(x, np.arange(30))  # one reference per class
    assert proj.fitted_classes == 0
    np.testing.assert_allclose(proj.matrix, np.eye(16))


def test_projection_round_trips_through_bytes() -> None:
    rng = np.random.default_rng(2)
    x, y = _clusters(rng, 10, 5, 8, 0.5)
    proj = fit_projection(x, y)
    back = Projection.from_bytes(proj.to_bytes())
    np.testing.assert_array_equal(back.matrix, proj.matrix)
    np.testing.assert_array_equal(back.mean, proj.mean)
    assert back.shrinkage == proj.shrinkage and back.fitted_samples == len(x)


def test_logistic_recovers_a_calibrated_probability() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20000, 1))
    p_true = 1 / (1 + np.exp(-(2.0 * x[:, 0] - 0.5)))
    y = (rng.random(20000) < p_true).astype(float)
    model = LogisticModel.fit(x, y)
    p = model.predict(x)
    assert np.abs(p - p_true).max() < 0.05
    assert expected_calibration_error(p, y) < 0.02
    # an overconfident predictor has a visibly larger ECE
    assert expected_calibration_error(np.clip(p_true * 1.5, 0, 1), y) > 0.1


def test_temperature_fit_prefers_the_generating_temperature() -> None:
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(3000, 10)) * 0.1
    probs = softmax(scores, 0.05)
    truth = np.array([rng.choice(10, p=p) for p in probs])
    assert fit_temperature(scores, truth) == pytest.approx(0.05, rel=0.25)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=60),
    st.sampled_from([0.5, 0.9, 0.99]),
)
def test_threshold_for_precision_meets_the_target(
    rows: list[tuple[float, bool]], target: float
) -> None:
    conf = np.array([r[0] for r in rows])
    correct = np.array([r[1] for r in rows])
    t = threshold_for_precision(conf, correct, target)
    chosen = conf >= t
    if chosen.any():
        assert correct[chosen].mean() >= target - 1e-9
    # and it is the lowest such cut-off: one step lower would break the target or add nothing
    lower = conf[conf < t]
    if len(lower):
        widened = conf >= lower.max()
        assert correct[widened].mean() < target


def test_ece_is_zero_for_perfect_calibration_bins() -> None:
    conf = np.array([0.25] * 4 + [0.75] * 4)
    correct = np.array([1, 0, 0, 0, 1, 1, 1, 0], float)
    assert expected_calibration_error(conf, correct, bins=4) == pytest.approx(0.0)
