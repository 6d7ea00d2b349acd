from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from cartos.fusion import WeightModel

MODEL = WeightModel()


def test_three_cans_read_as_quantity_three() -> None:
    fit = MODEL.fit(3 * 330 + 4, scale_sigma_g=1.0, weight_g=330, weight_tol_g=10)
    assert fit.quantity == 3
    assert fit.quantity_probability > 0.99
    assert not fit.contradicts(MODEL.mismatch_z)
    assert fit.log_ratio > 0  # fits far better than an item of unknown weight


@given(
    n=st.integers(min_value=1, max_value=8),
    weight=st.floats(min_value=30, max_value=2000),
    deviation=st.floats(min_value=-1.0, max_value=1.0),
)
def test_multiples_within_tolerance_give_their_quantity(
    n: int, weight: float, deviation: float
) -> None:
    tol = max(5.0, 0.03 * weight)
    delta = n * weight + deviation * tol  # every pack within tolerance
    fit = MODEL.fit(delta, 1.0, weight, tol)
    assert fit.quantity == n
    assert not fit.contradicts(MODEL.mismatch_z)


def test_weight_between_multiples_contradicts() -> None:
    fit = MODEL.fit(500, 1.0, 330, 10)
    assert fit.contradicts(MODEL.mismatch_z)
    assert fit.log_ratio < 0


def test_sku_without_nominal_weight_is_uninformative() -> None:
    fit = MODEL.fit(812.0, 1.0, None)
    assert not fit.informative
    assert fit.log_ratio == 0.0
    assert fit.quantity == 1
    assert not fit.contradicts(MODEL.mismatch_z)


def test_scale_noise_floor_applies_to_an_overconfident_scale() -> None:
    # a scale claiming 0.01 g noise must not turn a 2 g miss on a 5 g-tolerance item into a veto
    fit = MODEL.fit(102.0, 0.01, 100.0, 0.5)
    assert not fit.contradicts(MODEL.mismatch_z)
    assert math.isfinite(fit.log_ratio)
