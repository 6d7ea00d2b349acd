"""The frame ring: its bounds, and time queries checked against a plain sorted list."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartos.sensors.camera import Frame, FrameRing, RingCapacityError, as_bgr

TINY = as_bgr(np.zeros((2, 2, 3), np.uint8))


def frame_at(t: float, seq: int = 0, size: int = 2) -> Frame:
    image = TINY if size == 2 else as_bgr(np.zeros((size, size, 3), np.uint8))
    return Frame(image=image, t=t, seq=seq, source="test")


def test_count_bound_keeps_the_newest() -> None:
    ring = FrameRing(max_frames=5)
    for i in range(12):
        ring.push(frame_at(float(i), i))
    assert len(ring) == 5
    assert [f.seq for f in ring] == [7, 8, 9, 10, 11]


def test_byte_bound_keeps_as_many_frames_as_fit() -> None:
    frame_bytes = 10 * 10 * 3
    ring = FrameRing(max_frames=None, max_bytes=frame_bytes * 3 + 10)
    for i in range(8):
        ring.push(frame_at(float(i), i, size=10))
    assert len(ring) == 3
    assert ring.nbytes == 3 * frame_bytes
    assert ring.oldest() is not None and ring.oldest().seq == 5  # type: ignore[union-attr]


def test_both_bounds_apply() -> None:
    ring = FrameRing(max_frames=4, max_bytes=10 * 10 * 3 * 2)
    for i in range(6):
        ring.push(frame_at(float(i), i, size=10))
    assert len(ring) == 2
    ring2 = FrameRing(max_frames=2, max_bytes=10**9)
    for i in range(6):
        ring2.push(frame_at(float(i), i, size=10))
    assert len(ring2) == 2


def test_frame_bigger_than_the_byte_bound_is_refused() -> None:
    ring = FrameRing(max_frames=None, max_bytes=100)
    with pytest.raises(RingCapacityError):
        ring.push(frame_at(0.0, size=10))


def test_a_ring_needs_a_bound() -> None:
    with pytest.raises(ValueError):
        FrameRing(max_frames=None, max_bytes=None)


def test_empty_ring_answers_nothing() -> None:
    ring = FrameRing()
    assert ring.nearest(1.0) is None
    assert ring.between(0.0, 10.0) == []
    assert ring.before(1.0, 3) == []
    assert ring.after(1.0, 3) == []
    assert ring.latest() is None


times_strategy = st.lists(
    st.floats(min_value=0.0, max_value=100.0, allow_nan=False), min_size=0, max_size=40
)


@settings(max_examples=200, deadline=None)
@given(
    times=times_strategy,
    capacity=st.integers(min_value=1, max_value=20),
    t=st.floats(min_value=-5.0, max_value=105.0, allow_nan=False),
    t_span=st.floats(min_value=0.0, max_value=50.0, allow_nan=False),
    n=st.integers(min_value=0, max_value=8),
)
def test_time_queries_match_a_sorted_list(
    times: list[float], capacity: int, t: float, t_span: float, n: int
) -> None:
    ring = FrameRing(max_frames=capacity)
    for seq, ft in enumerate(times):
        ring.push(frame_at(ft, seq))
    kept = sorted(times, reverse=True)
    # Eviction drops the oldest *times*; with ties the order among equal times is not checked.
    expected = sorted(kept[:capacity]) if len(times) > capacity else sorted(times)
    held = [f.t for f in ring]
    assert held == expected
    assert len(ring) == min(len(times), capacity)

    assert [f.t for f in ring.between(t, t + t_span)] == [x for x in held if t <= x <= t + t_span]
    at_or_before = [x for x in held if x <= t]
    assert [f.t for f in ring.before(t, n)] == (at_or_before[-n:] if n else [])
    assert [f.t for f in ring.after(t, n)] == [x for x in held if x > t][:n]
    # every frame lies on exactly one side of any instant
    assert len(ring.before(t, 10**6)) + len(ring.after(t, 10**6)) == len(ring)

    nearest = ring.nearest(t)
    if held:
        assert nearest is not None
        best = min(abs(x - t) for x in held)
        assert abs(nearest.t - t) == best
    else:
        assert nearest is None


def test_nearest_prefers_the_earlier_frame_on_a_tie() -> None:
    ring = FrameRing()
    ring.push(frame_at(1.0, 1))
    ring.push(frame_at(2.0, 2))
    found = ring.nearest(1.5)
    assert found is not None and found.seq == 1


def test_out_of_order_frame_is_placed_by_time() -> None:
    ring = FrameRing()
    for seq, t in enumerate([1.0, 3.0, 2.0, 0.5]):
        ring.push(frame_at(t, seq))
    assert [f.t for f in ring] == [0.5, 1.0, 2.0, 3.0]


def test_concurrent_pushes_and_queries_keep_the_ring_consistent() -> None:
    ring = FrameRing(max_frames=50)
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            for i in range(2000):
                ring.push(frame_at(i + offset / 10, i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for i in range(2000):
                window = ring.between(i - 20.0, float(i))
                assert [f.t for f in window] == sorted(f.t for f in window)
                assert len(ring) <= 50
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    threads.append(threading.Thread(target=reader))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(ring) == 50
