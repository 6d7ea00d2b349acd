"""Generated load-cell traces: deterministic, saturating like the ADC, truthful ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_bridge.emulator.traces import (
    TraceBuilder,
    counts,
    placement_trace,
    shopping_without_changes,
)
from firmware_bridge.scale import ADC_MAX, ADC_MIN, Calibration, Scale, Settled

CAL = Calibration(84_000, 1_084_000, 10_000_000)


def _busy_builder(seed: int) -> TraceBuilder:
    return (
        TraceBuilder(30.0, seed, initial_load_g=500.0, drift_g_per_hour=2.0)
        .place(3.0, 250.0)
        .bump(8.0)
        .hand_rest(11.0)
        .roll(15.0, 22.0)
        .remove(26.0, 100.0)
    )


def test_same_seed_same_trace_other_seed_other_trace() -> None:
    a, b, c = (_busy_builder(s).build() for s in (1, 1, 2))
    assert np.array_equal(a.grams, b.grams) and np.array_equal(a.t_ms, b.t_ms)
    assert a.placements == b.placements and a.disturbances == b.disturbances
    assert not np.allclose(a.grams, c.grams)


def test_ground_truth_and_timing() -> None:
    trace = _busy_builder(3).build()
    assert [(p.t_ms, p.delta_mg) for p in trace.placements] == [(3000, 250_000), (26000, -100_000)]
    assert [d.kind for d in trace.disturbances] == ["bump", "hand", "rolling"]
    assert len(trace.t_ms) == 30 * 80 and trace.t_ms[1] - trace.t_ms[0] in (12, 13)

    def level(t0: float, t1: float) -> float:
        sel = (trace.t_ms >= t0 * 1000) & (trace.t_ms < t1 * 1000)
        return float(np.mean(trace.grams[sel]))

    assert level(0.5, 2.5) == pytest.approx(500.0, abs=1.0)
    assert level(5.0, 7.5) == pytest.approx(750.0, abs=1.0)
    assert level(28.0, 30.0) == pytest.approx(650.0, abs=1.0)


def test_disturbances_have_their_size() -> None:
    builder = TraceBuilder(20.0, 5, initial_load_g=1000.0, noise_g=0.0, flicker_g=0.0)
    trace = builder.bump(2.0, amplitude_g=400.0, duration_s=0.15).roll(8.0, 16.0, 40.0).build()
    bump = trace.grams[(trace.t_ms >= 2000) & (trace.t_ms < 2300)]
    assert 1300.0 < bump.max() < 1450.0
    rolling = trace.grams[(trace.t_ms >= 9000) & (trace.t_ms < 15000)] - 1000.0
    assert 20.0 < np.abs(rolling).max() < 40.0 * 3 + 20.0  # vibration plus floor joints
    quiet = trace.grams[(trace.t_ms >= 4000) & (trace.t_ms < 7500)]
    assert np.abs(quiet - 1000.0).max() < 0.5


def test_counts_follow_the_calibration_and_saturate_like_the_adc() -> None:
    grams = np.array([0.0, 1234.567, -50.0, 1e6, -1e6])
    raw = counts(grams, CAL)
    assert raw.dtype == np.int64
    assert raw[:3].tolist() == [CAL.to_counts(round(g * 1000)) for g in grams[:3]]
    assert raw[3] == ADC_MAX and raw[4] == ADC_MIN


def test_samples_say_none_while_disconnected() -> None:
    trace = TraceBuilder(3.0, 0, initial_load_g=100.0).disconnect(1.0, 2.0).build()
    samples = list(trace.samples(CAL))
    missing = [t for c, t in samples if c is None]
    assert len(missing) == 80 and missing[0] == 1000 and missing[-1] == 1988


@pytest.mark.parametrize("rolling", [False, True])
@pytest.mark.parametrize("removal", [False, True])
def test_the_scale_finds_the_one_change_of_a_placement_trace(rolling: bool, removal: bool) -> None:
    trace, quiet_ms = placement_trace(17, 180.0, removal=removal, rolling=rolling)
    (truth,) = trace.placements
    assert truth.delta_mg == (-180_000 if removal else 180_000)
    assert quiet_ms >= truth.t_ms
    scale = Scale(CAL, 30_000_000, 2000, 500)
    found = [ev for c, t in trace.samples(CAL) for ev in scale.update(c, t)]
    settled = [ev for ev in found if isinstance(ev, Settled)]
    assert len(settled) == 2  # the load at boot, then the change
    assert abs(settled[1].delta_mg - truth.delta_mg) <= 2000
    assert settled[1].t_ms >= truth.t_ms - 300


def test_shopping_soak_has_disturbances_and_no_changes() -> None:
    trace = shopping_without_changes(4, 300.0, start_ms=600_000)
    assert trace.placements == ()
    kinds = {d.kind for d in trace.disturbances}
    assert kinds == {"bump", "hand", "rolling"}
    assert trace.t_ms[0] == 600_000
