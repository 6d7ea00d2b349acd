"""The footprint verdict: arithmetic of the budget and the advice when a profile does not fit.

The measuring process itself runs in ``test_cli.py``; here the probe's answer is built from the
profile's own numbers so each expectation follows from the inputs.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartos.profiles import MemoryConfig, load_profile
from cartos.profiles.footprint import (
    MIB,
    Footprint,
    centroid_bytes_per_sku,
    footprint_from_probe,
    over_budget_message,
)
from cartos.profiles.schema import DeviceProfile

DIM = 1280


def probe_answer(profile: DeviceProfile, baseline_mib: int, model_mib: int, arena_mib: int) -> Any:
    """What the probe would report for these stage sizes and the profile's own table size."""
    cat = profile.catalogue
    table_bytes = (
        (cat.max_skus * (1 + cat.exemplars_per_sku) + cat.family_count + cat.brand_count) * DIM * 4
    )
    stages = [baseline_mib, model_mib, arena_mib, table_bytes / MIB]
    kib = [round(sum(stages[: i + 1]) * 1024) for i in range(len(stages))]
    return {
        "stages_kib": {
            "start": 12 * 1024,
            "imports": kib[0],
            "loaded": kib[1],
            "warm": kib[2],
            "table": kib[3],
        },
        "peak_kib": kib[3] + 2048,
        "embedding_dim": DIM,
        "warmup_runs": 3,
        "seconds": 1.0,
    }


def with_budget(profile: DeviceProfile, budget: int) -> DeviceProfile:
    return profile.model_copy(update={"memory": MemoryConfig(budget_mib=budget, headroom=0.2)})


def test_components_add_up_to_peak_plus_ring() -> None:
    profile = load_profile("sim")
    answer = probe_answer(profile, 80, 25, 60)
    fp = footprint_from_probe(profile, answer)
    expected = answer["peak_kib"] / 1024 + profile.camera.ring_bytes / MIB
    assert fp.total_mib == pytest.approx(expected)
    assert fp.component("transient_peak").mib == pytest.approx(2.0)
    assert fp.component("model_weights").mib == pytest.approx(25, abs=0.01)


@given(budget=st.integers(min_value=64, max_value=8192))
def test_fits_exactly_when_total_is_within_the_usable_share(budget: int) -> None:
    profile = with_budget(load_profile("sim"), budget)
    fp = footprint_from_probe(profile, probe_answer(profile, 80, 25, 60))
    assert fp.fits == (fp.total_mib <= budget * 0.8)
    assert 0.0 <= fp.free_fraction <= 1.0


def test_over_budget_message_names_every_component_and_what_would_fit() -> None:
    profile = with_budget(load_profile("sim"), 400)
    fp = footprint_from_probe(profile, probe_answer(profile, 80, 25, 60))
    assert not fp.fits
    message = over_budget_message(profile, fp)
    assert message.startswith(f"profile sim: footprint {fp.total_mib:.0f} MiB exceeds the 80%")
    for label in ("process baseline", "model weights", "inference arena", "centroid table"):
        assert label in message
    per_sku = centroid_bytes_per_sku(profile, DIM) / MIB
    room = fp.usable_mib - (fp.total_mib - fp.component("centroid_table").mib)
    assert f"about {math.floor(room / per_sku)} fit" in message
    assert f"a budget of at least {math.ceil(fp.total_mib / 0.8)} MiB" in message


def test_budget_below_the_fixed_cost_says_no_setting_can_fit() -> None:
    profile = with_budget(load_profile("sim"), 100)
    fp: Footprint = footprint_from_probe(profile, probe_answer(profile, 80, 25, 60))
    message = over_budget_message(profile, fp)
    assert "no catalogue or camera setting can fit" in message
    assert f"a budget above {math.ceil(105 / 0.8)} MiB" in message
